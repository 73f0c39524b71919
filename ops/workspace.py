"""A slice's stack in a project directory of its own, driven through the Automation API.

One place for what the end-to-end tests, the benchmark and the ephemeral cycle all need: a project
directory whose program files are links into the checkout (so a stack's `Pulumi.<stack>.yaml` never
lands in the repo and parallel runs never share a workspace), the engine's environment (backend,
passphrase, nothing that reaches for the network), and the stack's config for a slice at a given Fly
endpoint.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pulumi import automation as auto

from enginejob.backend_lock import backend_url_of, project_of, stack_lock

REPO = Path(__file__).resolve().parent.parent
# The program runs in the virtualenv this process runs in (Pulumi.yaml names `.venv`): the tests exercise the
# Python they were started with (scripts/test runs them on 3.11 and 3.13), the cycle that of scripts/setup.sh.
VENV = Path(sys.prefix)


def find_pulumi_bin() -> Path | None:
    """The directory of the engine `scripts/setup.sh` made available (`ARTIFACT_PULUMI_BIN`, else `PATH`),
    holding both the CLI and the Python language host; None when there is none."""
    candidates = [os.environ.get("ARTIFACT_PULUMI_BIN", "")]
    found = shutil.which("pulumi")
    if found:
        candidates.append(str(Path(found).resolve().parent))
    for directory in candidates:
        if directory and (Path(directory) / "pulumi").is_file() and \
                (Path(directory) / "pulumi-language-python").is_file():
            return Path(directory)
    return None


def link_project(work_dir: Path, repo: Path = REPO, venv: Path = VENV) -> Path:
    """Make ``work_dir`` a project directory: every top-level entry of the checkout as a link, except hidden
    ones and the stack files `Pulumi.<stack>.yaml`, and ``venv`` as `.venv`. Idempotent (a rerun finds its
    links)."""
    work_dir.mkdir(parents=True, exist_ok=True)
    entries = {e.name: e for e in repo.iterdir()
               if not e.name.startswith(".") and not (e.name.startswith("Pulumi.") and e.name != "Pulumi.yaml")}
    entries[".venv"] = venv
    for name, entry in entries.items():
        link = work_dir / name
        if not link.is_symlink() and not link.exists():
            link.symlink_to(entry)
    return work_dir


def engine_env(*, pulumi_bin: Path | None, pulumi_home: Path | None = None, backend_url: str | None = None,
               passphrase: str | None = None, passphrase_file: Path | None = None,
               fly_token: str | None = None) -> dict[str, str]:
    """The environment the engine runs with (on top of this process's own): the engine and the project's
    virtualenv first on PATH, no update check, no plugin downloads. Unset arguments leave the inherited
    value (e.g. a PULUMI_BACKEND_URL or PULUMI_ACCESS_TOKEN of the caller's) alone."""
    path = [str(VENV / "bin"), os.environ.get("PATH", "")]
    if pulumi_bin is not None:
        path.insert(0, str(pulumi_bin))
    env = {"PATH": os.pathsep.join(path), "PULUMI_SKIP_UPDATE_CHECK": "true",
           "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true"}
    if pulumi_home is not None:
        env["PULUMI_HOME"] = str(pulumi_home)
    if backend_url is not None:
        env["PULUMI_BACKEND_URL"] = backend_url
    if passphrase is not None:
        env["PULUMI_CONFIG_PASSPHRASE"] = passphrase
    if passphrase_file is not None:
        env["PULUMI_CONFIG_PASSPHRASE_FILE"] = str(passphrase_file)
    if fly_token is not None:
        env["FLY_API_TOKEN"] = fly_token
    return env


def slice_config(stack_name: str, *, org: str, region: str, domain: str | None = None,
                 fly_url: str | None = None, flaps_url: str | None = None, volume_size_gb: int = 1,
                 protect_volumes: bool = False) -> dict[str, str]:
    """Plain config of a throwaway slice: a small unprotected volume, its own domain, an explicit Fly
    endpoint when given (flysim's serves both APIs at one URL)."""
    config = {"artifact-slice:org": org, "artifact-slice:primaryRegion": region,
              "artifact-slice:nfsVolumeSizeGb": str(volume_size_gb),
              "artifact-slice:protectVolumes": str(protect_volumes).lower(),
              "artifact-slice:domain": domain or f"{stack_name}.artifact.test"}
    if fly_url:
        config["fly:apiBaseUrl"] = fly_url
        config["fly:flapsBaseUrl"] = flaps_url or fly_url
    elif flaps_url:
        config["fly:flapsBaseUrl"] = flaps_url
    return config


def open_stack(stack_name: str, work_dir: Path, env: Mapping[str, str], *, pulumi_home: Path | None = None,
               create: bool = True, pulumi_command: auto.PulumiCommand | None = None) -> auto.Stack:
    """Create or select (``create=False``: only select; `auto.StackNotFoundError` when missing)."""
    opts = auto.LocalWorkspaceOptions(work_dir=str(work_dir), env_vars=dict(env),
                                      pulumi_home=str(pulumi_home) if pulumi_home else None,
                                      pulumi_command=pulumi_command)
    pick = auto.create_or_select_stack if create else auto.select_stack
    return pick(stack_name=stack_name, work_dir=str(work_dir), opts=opts)


def set_config(stack: auto.Stack, config: Mapping[str, str], secret_config: Mapping[str, str] | None = None) -> None:
    values = {k: auto.ConfigValue(value=v) for k, v in config.items()}
    values.update({k: auto.ConfigValue(value=v, secret=True) for k, v in (secret_config or {}).items()})
    stack.set_all_config(values)


@dataclass
class SliceStack:
    """A slice's stack and what its operations printed, stdout and stderr (``events``; also passed to ``echo``
    as they come).

    Every operation that writes the stack (up, refresh, destroy, stack rm, cancel) first takes the stack's
    lock (`enginejob.backend_lock`: an advisory lock on a postgres:// backend, a flock on file://), waiting up to
    ``lock_wait`` seconds (default ``backend_lock.default_wait()``) for another holder, and saying so once in
    ``events``; ``lock_title`` names the caller in what a waiting one is told ("the ephemeral cycle");
    ``lock_stop()`` true stops the wait (``backend_lock.WaitStopped``)."""

    stack: auto.Stack
    work_dir: Path
    events: list[str] = field(default_factory=list)
    echo: Callable[[str], None] | None = None
    lock_title: str = ""
    lock_wait: float | None = None
    lock_stop: Callable[[], bool] | None = None

    def _out(self, line: str) -> None:
        self.events.append(line)
        if self.echo is not None:
            self.echo(line)

    def locked(self, operation: str) -> Any:
        """The stack's lock for ``operation`` (a context manager; ``enginejob.Busy`` when the wait runs out)."""
        workspace = self.stack.workspace
        title = f"`pulumi {operation}` of {self.stack.name}" + (f" ({self.lock_title})" if self.lock_title else "")

        def waiting(holder: Any) -> None:
            self._out(f"stack lock: {holder.sentence() if holder else 'another update holds the stack'}; "
                      f"waiting for it to finish")

        return stack_lock(backend_url_of(workspace.env_vars, workspace.pulumi_home), project_of(self.work_dir),
                          self.stack.name, title=title, wait=self.lock_wait, on_wait=waiting, stop=self.lock_stop,
                          env=workspace.env_vars)

    def up(self, **kwargs: Any) -> auto.UpResult:
        with self.locked("up"):
            return self.stack.up(on_output=self._out, on_error=self._out, color="never", **kwargs)

    def up_as_cli(self) -> None:
        """`pulumi up --yes --skip-preview` as a CI job runs it: the engine's command alone. (``up`` goes
        through the Automation API, which runs `stack output` and `stack history` after it for its result.)
        Raises ``auto.CommandError`` with what the engine printed when it fails."""
        with self.locked("up"):
            self._cli("up", "--yes", "--skip-preview", "--color", "never", "--stack", self.stack.name)

    def _cli(self, *args: str) -> None:
        workspace = self.stack.workspace
        workspace.pulumi_command.run(
            list(args), str(self.work_dir),
            {**workspace.env_vars, **({"PULUMI_HOME": workspace.pulumi_home} if workspace.pulumi_home else {})},
            on_output=self._out, on_error=self._out)

    def preview(self, **kwargs: Any) -> auto.PreviewResult:
        return self.stack.preview(on_output=self._out, on_error=self._out, color="never", diff=True, **kwargs)

    def refresh(self, **kwargs: Any) -> auto.RefreshResult:
        with self.locked("refresh"):
            return self.stack.refresh(on_output=self._out, on_error=self._out, color="never", **kwargs)

    def destroy(self, **kwargs: Any) -> auto.DestroyResult:
        with self.locked("destroy"):
            return self.stack.destroy(on_output=self._out, on_error=self._out, color="never", **kwargs)

    def cancel(self) -> None:
        """`pulumi cancel`: release the Pulumi lock a killed run left. Under the stack's own lock, so it never
        breaks the lock of an update an entry point is running (it waits for that one instead)."""
        with self.locked("cancel"):
            self.stack.cancel()

    def outputs(self) -> dict[str, Any]:
        return {k: v.value for k, v in self.stack.outputs().items()}

    def remove(self, *, force: bool = False, remove_backups: bool = False) -> None:
        """`pulumi stack rm`; ``remove_backups`` also removes the backend's copies of its state (an ephemeral
        stack's, so that nothing of it is left in a shared backend)."""
        with self.locked("stack rm"):
            if remove_backups:
                self._cli("stack", "rm", "--yes", "--remove-backups", *(["--force"] if force else []), self.stack.name)
            else:
                self.stack.workspace.remove_stack(self.stack.name, force=force or None)

    def resources(self) -> list[dict[str, Any]]:
        """The state's resources as the engine recorded them (type, urn, parent, dependencies, ...)."""
        return list(self.stack.export_stack().deployment.get("resources") or [])


def local_slice_stack(root: Path, pulumi_bin: Path | None, fly_url: str, fly_token: str, stack_name: str, *,
                      org: str = "personal", region: str = "syd", config: Mapping[str, str] | None = None,
                      secret_config: Mapping[str, str] | None = None,
                      passphrase: str = "local-passphrase", backend_url: str | None = None) -> SliceStack:
    """A slice on a Fly endpoint at ``fly_url`` (flysim), everything under ``root``: the project directory
    `project/`, the engine's home `pulumi-home/` and, unless ``backend_url`` names another (a team's
    postgres://), a file backend `backend/`."""
    work_dir = link_project(root / "project")
    if backend_url is None:
        backend = root / "backend"
        backend.mkdir(parents=True, exist_ok=True)
        backend_url = f"file://{backend}"
    home = root / "pulumi-home"
    env = engine_env(pulumi_bin=pulumi_bin, pulumi_home=home, backend_url=backend_url,
                     passphrase=passphrase, fly_token=fly_token)
    stack = open_stack(stack_name, work_dir, env, pulumi_home=home)
    set_config(stack, {**slice_config(stack_name, org=org, region=region, fly_url=fly_url), **(config or {})},
               secret_config)
    return SliceStack(stack=stack, work_dir=work_dir)
