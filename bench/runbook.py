"""The provisioning runbook done strictly in sequence, one call after the other, through the project's own
Fly client and the same machine configs the components build (deploy/fly.*.toml): the baseline a graph
that runs independent work in parallel should beat."""

from __future__ import annotations

import time
from typing import Any

from components.deploy import default_image, fly_toml
from components.nfs import NFS_VOLUME_NAME, SELF_MOUNT_CHECK
from components.services import dc_env
from fly import FlyClient, FlyConnection
from fly.appconfig import machine_config, release_command_config, release_exit_code
from controlplane.infra import Infra
from controlplane.manifest import Slice
from controlplane.validate import validate_slice

HOST_IMAGES = ("basic", "coder")


def run_sequential(connection: FlyConnection, *, org: str, prefix: str, region: str = "syd",
                   volume_size_gb: int = 1) -> dict[str, Any]:
    """Stand a slice up step by step, validate it, then delete it (not timed). Returns the seconds up to
    and including the validation, and the validation's report."""
    env = dc_env(prefix, f"{prefix}.artifact.test")
    base_env = {"PRIMARY_REGION": region}
    started = time.perf_counter()
    apps: dict[str, dict[str, Any]] = {}
    with FlyClient(connection) as fly:
        try:
            organization = fly.get_organization(org)
            assert organization is not None, f"org {org} not found"

            def app(role: str, name: str, **manifest: Any) -> str:
                fly.create_app(name, org)
                apps[role] = {"name": name, "region": region,
                              "flycast": fly.assign_ip(name, "private_v6", org_slug=org).ip, **manifest}
                return name

            def machine(app_name: str, config: dict[str, Any], name: str) -> str:
                created = fly.create_machine(app_name, config, name=name, region=region)
                fly.wait_machine(app_name, created.id, "started", instance_id=created.instance_id)
                return created.id

            # Phase 2: NFS and its gate.
            nfs = app("nfs", f"{prefix}-nfs")
            volume = fly.create_volume(nfs, name=NFS_VOLUME_NAME, region=region, size_gb=volume_size_gb)
            nfs_toml = fly_toml("nfs")
            nfs_machine = machine(nfs, machine_config(nfs_toml, image=default_image("nfs"),
                                                      mounts={NFS_VOLUME_NAME: volume.id}, env=base_env),
                                  f"{nfs}-0")
            assert fly.exec_machine(nfs, nfs_machine, SELF_MOUNT_CHECK).exit_code == 0, "self-mount check failed"
            # The worker pool: an app and its address, no machines.
            worker_image = default_image("worker-pool")
            app("worker_pool", f"{prefix}-worker-pool", image=worker_image, machine_template=machine_config(
                fly_toml("worker-pool"), image=worker_image, env={**base_env, **env}))
            # Phase 3: router (public addresses, certificate), then exec.
            router = app("router", env["DC_ROUTER"])
            fly.assign_ip(router, "shared_v4")
            fly.assign_ip(router, "v6")
            fly.request_acme_certificate(router, f"{prefix}.artifact.test")
            machine(router, machine_config(fly_toml("router"), image=default_image("router"),
                                           env={**base_env, **env}), f"{router}-0")
            exec_app = app("exec", env["DC_EXEC"])
            machine(exec_app, machine_config(fly_toml("exec"), image=default_image("exec"),
                                             env={**base_env, **env}), f"{exec_app}-0")
            # Phase 4: host images, each a release command, its manifest read back from NFS.
            export = next((m.destination for m in nfs_toml.mounts if m.source == NFS_VOLUME_NAME), "/data")
            for name in HOST_IMAGES:
                image_app = app(f"image_{name}", f"{prefix}-fly-host-{name}")
                config = release_command_config(fly_toml(f"host-{name}"), image=default_image(f"host-{name}"),
                                                env={**base_env, **env})
                assert config is not None
                release = fly.create_machine(image_app, config, region=region)
                fly.wait_machine(image_app, release.id, "destroyed" if config.get("auto_destroy") else "stopped")
                code = release_exit_code(fly.list_machine_events(image_app, release.id))
                assert code == 0, f"release command of {image_app} exited {code}"
                read = fly.exec_machine(nfs, nfs_machine, ["cat", f"{export}/computers/images/{name}.json"])
                assert read.exit_code == 0, read.stderr
            # The control plane's token, then phase 6 with it.
            token = fly.create_org_token(organization.id or "", f"{prefix}-control-plane", expiry="1h")
            manifest = Slice.from_outputs({"slice": prefix, "org": {"slug": org}, "apps": apps}, source="the runbook")
            with Infra(manifest, FlyConnection.resolve(token=token["token"], api_base_url=connection.api_base_url,
                                                       flaps_base_url=connection.flaps_base_url, environ={})) as infra:
                report = validate_slice(infra)
            seconds = time.perf_counter() - started
            fly.revoke_org_token(token["id"])
        finally:
            for entry in apps.values():
                fly.delete_app(entry["name"])
    return {"seconds": round(seconds, 2), "validation_ok": report.ok}
