"""The services' fly.toml files (in deploy/), the source of truth for their machine configs.

``preflight`` reads every one of them and builds every machine config the slice will send, at
program start: a toml mistake then fails the preview before any API call, instead of surfacing from
inside an ``apply`` (the NFS machine's config waits for its volume id) after apps and volumes were
already created.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from fly.appconfig import FlyToml, FlyTomlError, auto_stop_mode, load_fly_toml, machine_config, release_command_config

from .config import SliceConfig, image_problem, looks_secret

# Not resolved: a project directory whose components/ is a symlink still reads its own deploy/.
DEPLOY_DIR = Path(__file__).absolute().parent.parent / "deploy"
# service (deploy/fly.<service>.toml) -> the stack config key that overrides its [build] image
SERVICES = {"nfs": "nfsImage", "router": "routerImage", "exec": "execImage", "worker-pool": "workerImage",
            "host-basic": "basicImage", "host-coder": "coderImage"}
_PLACEHOLDER_VOLUME = "vol_preflight"


class DeployConfigError(ValueError):
    """deploy/fly.*.toml that cannot become the slice's machines; one line naming each file and line."""


def fly_toml(service: str, deploy_dir: Path | None = None) -> FlyToml:
    """Parsed and validated once per program; messages name it as deploy/fly.<service>.toml."""
    return _load(service, deploy_dir or DEPLOY_DIR)


@lru_cache(maxsize=None)
def _load(service: str, deploy_dir: Path) -> FlyToml:
    return load_fly_toml(deploy_dir / f"fly.{service}.toml", source=f"deploy/fly.{service}.toml")


def default_image(service: str, deploy_dir: Path | None = None) -> str:
    toml = fly_toml(service, deploy_dir)
    image = toml.build.image if toml.build else None
    key = f"artifact-slice:{SERVICES.get(service, 'image')}"
    if not image:
        raise toml.error("build.image", "is not set, and the stack sets no image for this service",
                         f'add [build] image = "registry/repository:tag", or `pulumi config set {key} <image>`')
    if problem := image_problem(image):
        raise toml.error("build.image", f"{image!r} {problem}",
                         f"correct it, or override it with `pulumi config set {key} <image>`")
    return image


def _image(config: SliceConfig, service: str, deploy_dir: Path | None) -> str:
    field = {alias: name for name, alias in SliceConfig.keys().items()}[SERVICES[service]]
    return getattr(config, field) or default_image(service, deploy_dir)


def _check(config: SliceConfig, service: str, deploy_dir: Path | None) -> None:
    toml = fly_toml(service, deploy_dir)
    for name, value in toml.env.items():  # [env] lands in plain text in the machine config and the state
        if looks_secret(value):
            raise toml.error(f"env.{name}", "holds what looks like a credential, in plain text",
                             "remove it from the file; secrets reach the machines as Fly secrets from secret stack "
                             "config (`pulumi config set --secret artifact-slice:clerkSecretKey <value>`)")
    image = _image(config, service, deploy_dir)
    env = {"PRIMARY_REGION": config.primary_region}
    if service == "nfs":
        from .nfs import NFS_VOLUME_NAME  # nfs.py imports this module

        mounts = [m for m in toml.mounts if m.source == NFS_VOLUME_NAME]
        if not mounts:
            raise toml.error("mounts", f"has no [[mounts]] with source = {NFS_VOLUME_NAME!r}; the NFS server exports "
                             "that volume", f'add [[mounts]] source = "{NFS_VOLUME_NAME}" destination = "/data"')
        machine_config(toml, image=image, mounts={NFS_VOLUME_NAME: _PLACEHOLDER_VOLUME}, env=env)
    elif service.startswith("host-"):
        if release_command_config(toml, image=image, env=env) is None:
            raise toml.error("deploy.release_command", "is not set; a host image publishes its manifest from it",
                             f'add [deploy] release_command = "/usr/local/bin/publish-image-manifest {service[5:]}"')
    else:
        if service == "worker-pool" and (mode := auto_stop_mode(toml)) != "suspend":
            raise toml.error("http_service.auto_stop_machines", f"is {mode!r}; idle workers must be suspended "
                             "(fast resume), not stopped or left running", 'set auto_stop_machines = "suspend"')
        machine_config(toml, image=image, env=env)


def preflight(config: SliceConfig, deploy_dir: Path | None = None) -> None:
    """Every service's fly.toml read and turned into the machine config the slice will send; all
    problems reported together, one line, each naming its file and line."""
    problems: list[str] = []
    for service in SERVICES:
        try:
            _check(config, service, deploy_dir)
        except FlyTomlError as exc:
            problems.append(str(exc))
    if problems:
        raise DeployConfigError("; ".join(problems))
