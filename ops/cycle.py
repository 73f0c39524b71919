"""The ephemeral end-to-end cycle of an org slice: create a throwaway stack `org1-e2e-<run id>`, `up` it,
validate it (phase 6), and ALWAYS tear it down again: destroy (retried once, the careful way), remove the
stack, then sweep any Fly app of the stack's prefix that is still there. Used by .github/workflows/e2e.yml
(through scripts/ephemeral-cycle); runs on a laptop too.

Backend: PULUMI_BACKEND_URL (or PULUMI_ACCESS_TOKEN for Pulumi Cloud) if set, else a `file://` backend in
the run's state dir. Secrets: PULUMI_CONFIG_PASSPHRASE(_FILE) if set, else a passphrase generated for this
run (kept in the state dir, mode 600, never printed; masked under GitHub Actions).

Lock: every engine operation that writes the stack first takes the stack's lock (enginejob/backend_lock.py: a
PostgreSQL advisory lock on a postgres:// backend), waiting up to ARTIFACT_STACK_LOCK_WAIT seconds (default
900) for another update of it and saying who holds it; `--cleanup-only` releases Pulumi's own lock (`pulumi
cancel`) only once it holds that lock, so it never breaks the lock of a cycle that still runs.

Signals: SIGINT, SIGTERM or SIGHUP during the cycle cancel the running engine operation gracefully
(pulumi finishes what is in flight, records it and releases its lock), then the teardown runs; during
the teardown they are noted and ignored, so the teardown runs to its end.

Exit code: 0 when init, up, validate, destroy and stack rm succeeded and nothing was left behind; 1 when a
step failed (the last lines name it, and what may be left); 2 for bad usage; 128+N when stopped by
signal N (the teardown still ran).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import yaml

BASE_STACK = "org1"
PREFIX_MAX = 42  # an app prefix leaves room for the longest role suffix within Fly's 63 characters
RUN_ID = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")
# Settings of the real slice an ephemeral one must not share (the rest of its plain config is copied).
NOT_COPIED = {"prefix", "domain", "protectVolumes", "createOrg", "nfsVolumeSizeGb"}
FAIL_MIDWAY = {"operation": "Machines_create", "status": 422,
               "message": "injected by ephemeral-cycle --fail-midway"}
SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
CLERK_FROM_ENV = {"clerkSecretKey": "CLERK_SECRET_KEY", "clerkPublishableKey": "CLERK_PUBLISHABLE_KEY"}
LOCK_TITLE = "the ephemeral cycle"


def log(message: str) -> None:
    print(f"ephemeral-cycle: {message}", file=sys.stderr, flush=True)


def echo(line: str) -> None:
    print(line, flush=True)


# -- arguments ------------------------------------------------------------------------------------

def _run_id(value: str) -> str:
    if not RUN_ID.match(value):
        raise argparse.ArgumentTypeError(f"use lowercase letters, digits and dashes (got {value!r})")
    if len(f"{BASE_STACK}-e2e-{value}") > PREFIX_MAX:
        raise argparse.ArgumentTypeError(
            f"too long: the stack name {BASE_STACK}-e2e-{value} must fit an app prefix ({PREFIX_MAX} characters)")
    return value


def _target(value: str) -> str:
    if value not in ("flysim", "fly"):
        raise argparse.ArgumentTypeError(f"flysim or fly (got {value!r})")
    return value


def _positive(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"a positive integer (got {value!r})")
    return int(value)


def _fault(value: str) -> dict[str, Any]:
    try:
        spec = json.loads(value)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not JSON ({exc.msg}): {value!r}") from None
    if not isinstance(spec, dict):
        raise argparse.ArgumentTypeError(f"a JSON object, as flysim/faults.py describes (got {value!r})")
    from pydantic import ValidationError

    from flysim.faults import FaultSpec

    try:
        FaultSpec.model_validate(spec)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'spec'}: {e['msg']}" for e in exc.errors())
        raise argparse.ArgumentTypeError(f"not a fault flysim knows ({problems}; see flysim/faults.py): "
                                         f"{value!r}") from None
    return spec


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        message = message.replace("unrecognized arguments", "unknown argument")
        self.exit(2, f"ephemeral-cycle: {message}\nusage: scripts/ephemeral-cycle --run-id ID "
                     "[--fly flysim|fly] [options] (--help)\n")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = _Parser(prog="scripts/ephemeral-cycle", description=__doc__,
                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run-id", type=_run_id, metavar="ID",
                   help=f"required; the stack is {BASE_STACK}-e2e-ID and its apps {BASE_STACK}-e2e-ID-<role>. Unique "
                        "per run (CI uses <run_id>-<run_attempt>), not a dash-extension of another live run's id")
    p.add_argument("--fly", type=_target, default="flysim", metavar="flysim|fly",
                   help="where the slice goes: flysim (default; a simulator of its own on a free loopback port, "
                        "own token and state, stopped at the end) or fly (real Fly.io with FLY_API_TOKEN, an org "
                        "token, and optionally FLY_API_BASE_URL / FLY_FLAPS_BASE_URL)")
    p.add_argument("--org", help=f"Fly org (default: artifact-slice:org of Pulumi.{BASE_STACK}.yaml)")
    p.add_argument("--region", help=f"primary region (default: artifact-slice:primaryRegion of Pulumi.{BASE_STACK}.yaml); "
                                    "its other plain artifact-slice:* settings are copied, except "
                                    + ", ".join(sorted(NOT_COPIED)))
    p.add_argument("--domain", help=f"the slice's public domain (default <stack>.<artifact-slice:domain of {BASE_STACK}>)")
    p.add_argument("--volume-size-gb", type=_positive, default=1, metavar="N",
                   help="size of the NFS volume (default 1: an ephemeral slice holds no data)")
    p.add_argument("--state-dir", type=Path, metavar="DIR",
                   help="keep the run's files (project dir, file backend, generated passphrase, engine home) in DIR "
                        "instead of a temp dir removed at the end; a later --cleanup-only with the same DIR and "
                        "run id finds them")
    p.add_argument("--cleanup-only", action="store_true",
                   help="only the teardown: release a stale lock, destroy, stack rm, sweep (for a job whose "
                        "cycle was cancelled or killed; needs --fly fly)")
    p.add_argument("--fail-midway", action="store_true",
                   help="flysim only: make `up` fail midway (every machine create answers 422), to show that "
                        "the teardown still leaves nothing behind")
    p.add_argument("--flysim-fault", type=_fault, action="append", default=[], metavar="JSON",
                   help="flysim only, repeatable: a fault (see flysim/faults.py) injected once the simulator is "
                        "up, e.g. '{\"operation\": \"Machines_create\", \"status\": 422}'")
    p.add_argument("--flysim-latency", choices=["zero", "fast", "realistic"], default="fast",
                   help="flysim only: the simulator's latency profile (default fast)")
    p.add_argument("--keep-flysim-state", type=Path, metavar="PATH",
                   help="flysim only: write the simulator's final state (JSON) to PATH, after the teardown")
    args = p.parse_args(argv)
    if not args.run_id:
        p.error("--run-id is required")
    if args.fly == "fly" and (args.fail_midway or args.flysim_fault or args.keep_flysim_state):
        p.error("--fail-midway, --flysim-fault and --keep-flysim-state need --fly flysim")
    if args.fly == "flysim" and args.cleanup_only:
        p.error("--cleanup-only needs --fly fly (a simulator of an earlier run is gone with its run)")
    return args


def base_config(repo: Path) -> dict[str, str]:
    """The real slice's plain artifact-slice:* settings, less those an ephemeral slice must not share."""
    path = repo / f"Pulumi.{BASE_STACK}.yaml"
    document = yaml.safe_load(path.read_text()) if path.is_file() else None
    config = (document or {}).get("config") or {}
    plain: dict[str, str] = {}
    for key, value in config.items():
        namespace, _, name = str(key).partition(":")
        if namespace != "artifact-slice" or name in NOT_COPIED or value is None or isinstance(value, (dict, list)):
            continue
        plain[key] = str(value).lower() if isinstance(value, bool) else str(value)
    if config.get("artifact-slice:domain"):
        plain["base-domain"] = str(config["artifact-slice:domain"])
    return plain


# -- signals --------------------------------------------------------------------------------------

class Stopped(Exception):
    """A signal asked the cycle to stop; the teardown follows."""


@dataclass
class SignalGuard:
    """SIGINT/SIGTERM/SIGHUP: the first one cancels the running engine operation (SIGINT to pulumi, which
    then stops gracefully and releases its lock); the steps after it are skipped. During the teardown
    signals are only noted."""

    received: signal.Signals | None = None
    tearing_down: bool = False
    _previous: dict[int, Any] = field(default_factory=dict)

    def __enter__(self) -> SignalGuard:
        for sig in SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def check(self) -> None:
        if self.received is not None:
            raise Stopped(self.received.name)

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        sig = signal.Signals(signum)
        if self.tearing_down:
            log(f"got {sig.name} during the teardown: finishing it first "
                f"(kill -9 {os.getpid()} to abort; then rerun with --cleanup-only)")
            return
        if self.received is not None:
            log(f"got {sig.name} again: still stopping")
            return
        self.received = sig
        log(f"got {sig.name}: stopping the running step, then tearing down")
        for pid in _engine_children():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGINT)


def engine_command(pulumi_bin: Path, root: Path) -> Any:
    """The engine in a process group of its own (a wrapper in ``root``/bin), so that a Ctrl-C at a terminal
    reaches the cycle only, which passes it on once: pulumi's second Ctrl-C kills instead of cancelling,
    and its plugins must finish what they are doing. A runner that kills the job's process tree or session
    still reaches it."""
    from pulumi import automation as auto

    wrapper = root / "bin" / "pulumi"
    wrapper.parent.mkdir(parents=True, exist_ok=True)
    real = str(pulumi_bin / "pulumi")
    wrapper.write_text(f"#!{sys.executable} -S\nimport os, sys\nos.setpgid(0, 0)\n"
                       f"os.execv({real!r}, [{real!r}, *sys.argv[1:]])\n")
    wrapper.chmod(0o755)
    return auto.PulumiCommand(root=str(root))


def _engine_children() -> list[int]:
    """This process's `pulumi` children (the Automation API runs one command at a time)."""
    pids: list[int] = []
    for children in Path(f"/proc/{os.getpid()}/task").glob("*/children"):
        with contextlib.suppress(OSError):
            pids += [int(p) for p in children.read_text().split()]
    found = []
    for pid in pids:
        with contextlib.suppress(OSError):
            if Path(f"/proc/{pid}/comm").read_text().strip().startswith("pulumi"):
                found.append(pid)
    return found


# -- the cycle ------------------------------------------------------------------------------------

@dataclass
class Run:
    args: argparse.Namespace
    stack_name: str
    org: str
    region: str
    domain: str
    copied_config: dict[str, str]
    state_dir: Path
    own_state_dir: bool
    own_backend: bool = False
    own_passphrase: bool = False
    failed: list[str] = field(default_factory=list)
    stack_gone: bool = False
    engine: Any = None  # the PulumiCommand all engine runs go through (see engine_command)

    @property
    def prefix(self) -> str:
        return self.stack_name  # artifact-slice:prefix defaults to the stack name

    @property
    def work_dir(self) -> Path:
        return self.state_dir / "project"

    def fail(self, what: str) -> None:
        self.failed.append(what)
        log(f"FAILED: {what}")


def _mask(value: str) -> None:
    if os.environ.get("GITHUB_ACTIONS") == "true" and value:
        print(f"::add-mask::{value}", flush=True)


def _clear_empty(*names: str) -> None:
    """An unset GitHub secret arrives as an empty variable: it counts as unset."""
    for name in names:
        if not os.environ.get(name):
            os.environ.pop(name, None)


def _engine(run: Run, pulumi_bin: Path, fly_token: str) -> dict[str, str]:
    from .workspace import engine_env

    backend_url = None
    if not os.environ.get("PULUMI_BACKEND_URL") and not os.environ.get("PULUMI_ACCESS_TOKEN"):
        (run.state_dir / "backend").mkdir(parents=True, exist_ok=True)
        backend_url = f"file://{run.state_dir / 'backend'}"
        run.own_backend = True
    passphrase_file = None
    if not os.environ.get("PULUMI_CONFIG_PASSPHRASE") and not os.environ.get("PULUMI_CONFIG_PASSPHRASE_FILE"):
        passphrase_file = run.state_dir / "passphrase"
        if not passphrase_file.is_file() or not passphrase_file.read_text().strip():
            fd = os.open(passphrase_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as out:
                out.write("e2e_" + secrets.token_urlsafe(24))
        _mask(passphrase_file.read_text().strip())
        run.own_passphrase = True
    backend = ("its own file backend" if run.own_backend else
               "PULUMI_BACKEND_URL" if os.environ.get("PULUMI_BACKEND_URL") else "Pulumi Cloud")
    log(f"stack {run.stack_name} (org {run.org}, region {run.region}, domain {run.domain}, backend {backend})")
    return engine_env(pulumi_bin=pulumi_bin, pulumi_home=run.state_dir / "pulumi-home", backend_url=backend_url,
                      passphrase_file=passphrase_file, fly_token=fly_token)


@contextlib.contextmanager
def _flysim(run: Run, token: str) -> Iterator[Any]:
    """The run's own simulator (in this process), with its faults; its final state saved on the way out."""
    from flysim.testing import FlysimServer

    faults = [*([FAIL_MIDWAY] if run.args.fail_midway else []), *run.args.flysim_fault]
    with FlysimServer(token=token, orgs=[run.org], latency=run.args.flysim_latency) as server:
        log(f"flysim listening on {server.url} (org {run.org}, latency {run.args.flysim_latency})")
        try:
            for spec in faults:
                server.add_fault(**spec)
                log(f"flysim fault injected: {json.dumps(spec)}")
            yield server
        finally:
            if run.args.keep_flysim_state:
                try:
                    run.args.keep_flysim_state.write_text(json.dumps(server.state(), indent=1))
                except (OSError, ValueError, RuntimeError) as exc:
                    run.fail(f"could not save the simulator's state to {run.args.keep_flysim_state}: {exc}")


def _validate(outputs: dict[str, Any], stack_name: str) -> bool:
    """Phase 6, the control plane's own checks (`controlplane.validate`), with the slice's own org token."""
    from controlplane.errors import ControlPlaneError
    from controlplane.infra import Infra, connection_for
    from controlplane.manifest import Slice
    from controlplane.validate import validate_slice

    try:
        source = f"the outputs of stack {stack_name}"
        slice_ = Slice.from_outputs(outputs, source=source).check(source)
        with Infra(slice_, connection_for(slice_, outputs.get("controlPlaneToken") or None)) as infra:
            report = validate_slice(infra)
    except ControlPlaneError as exc:
        log(f"validate: {exc}")
        return False
    echo(report.render())
    return report.ok


def _list_state(stack: Any) -> None:
    """What the state still holds (type, name, id): printed when a destroy failed, never any inputs."""
    try:
        resources = stack.export_stack().deployment.get("resources") or []
    except Exception:  # noqa: BLE001 - only a hint; the failure itself is reported already
        return
    for resource in resources:
        if resource.get("custom") and not str(resource.get("type", "")).startswith("pulumi:"):
            log(f"  may be left: {resource.get('type')} {resource.get('urn', '').rsplit('::', 1)[-1]} "
                f"id={resource.get('id')}")


def _sweep(run: Run, fly_url: str | None, *, expected_clean: bool) -> None:
    """Delete every Fly app of this run's prefix (apps of a role: the rest of the name starts with a
    letter), which also removes their machines and volumes."""
    from fly import FlyClient, FlyConnection, FlyError

    prefix = run.prefix + "-"
    log(f"sweep: apps of prefix {prefix} in org {run.org}")
    try:
        connection = FlyConnection.resolve(api_base_url=fly_url, flaps_base_url=fly_url)
        with FlyClient(connection) as fly:
            apps = [a.name for a in fly.list_apps(run.org)
                    if a.name.startswith(prefix) and a.name[len(prefix):][:1].isalpha()]
            left = []
            for name in apps:
                try:
                    fly.delete_app(name)
                    log(f"swept app {name}")
                except FlyError as exc:
                    left.append(name)
                    log(f"could not delete app {name}: {exc}")
    except FlyError as exc:
        run.fail(f"sweep: could not list the apps of org {run.org}: {exc}")
        return
    if left:
        run.fail(f"sweep: still on Fly: {', '.join(left)}")
    elif not apps:
        log(f"sweep: nothing of {run.prefix} is left")
    elif expected_clean:
        run.fail("destroy left apps behind (swept now)")
    else:
        log(f"sweep: deleted what the stack had lost track of; nothing of {run.prefix} is left")


def _teardown(run: Run, env: dict[str, str], fly_url: str | None, guard: SignalGuard) -> None:
    from pulumi import automation as auto

    from enginejob import Busy

    from enginejob.backend_lock import LockUnavailable
    from .workspace import SliceStack, link_project, open_stack

    destroyed = False
    link_project(run.work_dir)
    try:
        stack = SliceStack(open_stack(run.stack_name, run.work_dir, env, pulumi_home=run.state_dir / "pulumi-home",
                                      create=False, pulumi_command=run.engine), run.work_dir, echo=echo,
                           lock_title=LOCK_TITLE)
    except auto.StackNotFoundError:
        log(f"no stack {run.stack_name} in the backend: nothing to destroy")
        run.stack_gone = True
        stack = None
    except auto.CommandError as exc:  # e.g. a backend out of reach: the sweep below still runs
        run.fail(f"could not open stack {run.stack_name}: {str(exc).strip()[-300:]}")
        stack = None
    try:
        if stack is not None:
            if run.args.cleanup_only:
                # The cycle that held the stack is gone (killed with its runner): any Pulumi lock it left is stale.
                # (SliceStack.cancel waits for the stack's own lock first: a cycle still running keeps its lock.)
                with contextlib.suppress(auto.CommandError):
                    stack.cancel()
            log(f"pulumi destroy {run.stack_name}")
            try:
                stack.destroy()
                destroyed = True
            except auto.CommandError:
                # Once more, the careful way: no stale lock, what is already gone dropped first, one at a time.
                log("destroy failed; releasing a stale lock, if any, and trying once more (refresh, one at a time)")
                with contextlib.suppress(auto.CommandError):
                    stack.cancel()
                try:
                    stack.destroy(refresh=True, parallel=1)
                    destroyed = True
                except auto.CommandError:
                    run.fail("pulumi destroy (twice)")
                    _list_state(stack.stack)
                    log("removing the stack with --force: the resources above may be left at Fly (the sweep below "
                        "deletes the apps)")
            try:
                stack.remove(force=not destroyed, remove_backups=True)  # nothing of it left in a shared backend
                run.stack_gone = True
                log(f"stack {run.stack_name} removed from the backend")
            except auto.CommandError as exc:
                run.fail(f"pulumi stack rm{'' if destroyed else ' --force'}: {str(exc).strip()[-300:]}")
    except (Busy, LockUnavailable) as exc:  # another update holds the stack, or no lock: neither destroy nor sweep
        run.fail(f"teardown of {run.stack_name}: {exc}")
        log("nothing was torn down; once it has finished, rerun with --cleanup-only")
        return
    _sweep(run, fly_url, expected_clean=destroyed and not run.args.cleanup_only and guard.received is None)


def _set_clerk_keys(stack: Any, env: dict[str, str]) -> str | None:
    """The Clerk keys, when the job has them (CLERK_SECRET_KEY, CLERK_PUBLISHABLE_KEY), as secret config,
    through stdin as preview.yml sets them: never on a command line (the Automation API's set_config puts
    values in the arguments). Returns what failed, if anything."""
    import subprocess

    workspace = stack.stack.workspace
    for key, variable in CLERK_FROM_ENV.items():
        value = os.environ.get(variable)
        if not value:
            continue
        done = subprocess.run(
            [workspace.pulumi_command.command, "config", "set", "--secret", "--stack", stack.stack.name,
             f"artifact-slice:{key}"], input=value, text=True, capture_output=True, cwd=str(stack.work_dir),
            env={**os.environ, **env, **({"PULUMI_HOME": workspace.pulumi_home} if workspace.pulumi_home else {})},
            timeout=120)
        if done.returncode != 0:
            return f"pulumi config set --secret artifact-slice:{key}: {done.stderr.strip()[-300:]}"
    return None


# What runs on the slice once it is up and validated (``python -m ops e2e --strategy ephemeral``): given its
# outputs (secret ones included), the stack's name, project directory and engine environment; False fails
# the cycle. The teardown runs after it all the same.
Between = Callable[[dict[str, Any], str, Path, dict[str, str]], bool]


def _cycle(run: Run, env: dict[str, str], fly_url: str | None, guard: SignalGuard,
           between: Between | None = None) -> None:
    from pulumi import automation as auto

    from enginejob import Busy

    from enginejob.backend_lock import LockUnavailable, WaitStopped
    from .workspace import SliceStack, link_project, open_stack, set_config, slice_config

    guard.check()
    link_project(run.work_dir)
    try:
        stack = SliceStack(open_stack(run.stack_name, run.work_dir, env, pulumi_home=run.state_dir / "pulumi-home",
                                      pulumi_command=run.engine), run.work_dir, echo=echo, lock_title=LOCK_TITLE,
                           lock_stop=lambda: guard.received is not None)
        config = {**run.copied_config, **slice_config(run.stack_name, org=run.org, region=run.region,
                                                      domain=run.domain, volume_size_gb=run.args.volume_size_gb,
                                                      fly_url=fly_url or os.environ.get("FLY_API_BASE_URL"),
                                                      flaps_url=fly_url or os.environ.get("FLY_FLAPS_BASE_URL"))}
        set_config(stack.stack, config)
        clerk_failed = _set_clerk_keys(stack, env)
    except auto.CommandError as exc:
        guard.check()
        run.fail(f"stack init {run.stack_name}: {str(exc).strip()[-500:]}")
        return
    if clerk_failed:
        run.fail(f"stack init {run.stack_name}: {clerk_failed}")
        return
    guard.check()
    log(f"pulumi up {run.stack_name}")
    try:
        stack.up()
    except auto.CommandError:
        guard.check()
        run.fail("pulumi up")
        return
    except (Busy, LockUnavailable) as exc:  # another update of this stack kept it past the wait; no database
        run.fail(f"pulumi up: {exc}")
        return
    except WaitStopped:
        guard.check()
        raise
    guard.check()
    log(f"validate (phase 6) {run.stack_name}")
    if not _validate(stack.outputs(), run.stack_name):
        run.fail("validate (phase 6)")
        return
    guard.check()
    if between is not None:
        if not between(stack.outputs(), run.stack_name, run.work_dir, env):
            run.fail("the e2e scenarios (see their summary above)")
        guard.check()


def _cleanup_files(run: Run) -> None:
    if run.stack_gone or run.args.fly == "flysim":
        # Nothing to come back for: drop the run's files (a given --state-dir stays, emptied).
        for name in ("project", "pulumi-home", "engine", *(["backend"] if run.own_backend else []),
                     *(["passphrase"] if run.own_passphrase else [])):
            path = run.state_dir / name
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
        if run.own_state_dir:
            shutil.rmtree(run.state_dir, ignore_errors=True)
    else:
        log(f"the stack may still be in the backend; the run's files stay in {run.state_dir}: rerun with "
            f"--run-id {run.args.run_id} --fly fly --state-dir {run.state_dir} --cleanup-only")


def main(argv: list[str] | None = None, *, between: Between | None = None) -> int:
    from .workspace import REPO, find_pulumi_bin

    args = parse_args(argv)
    stack_name = f"{BASE_STACK}-e2e-{args.run_id}"
    copied = base_config(REPO)
    base_domain = copied.pop("base-domain", "artifact.test")
    org = args.org or copied.get("artifact-slice:org")
    region = args.region or copied.get("artifact-slice:primaryRegion")
    if not org or not region:
        missing = "--org: no artifact-slice:org" if not org else "--region: no artifact-slice:primaryRegion"
        log(f"{missing} in Pulumi.{BASE_STACK}.yaml; pass it")
        return 2
    pulumi_bin = find_pulumi_bin()
    if pulumi_bin is None:
        log("the Pulumi engine is missing: run through scripts/ephemeral-cycle (it sources scripts/setup.sh)")
        return 2

    if args.fly == "flysim":
        # Never let a real token or endpoint leak into a simulated run, nor the other way round.
        for name in ("FLY_API_TOKEN", "FLY_ACCESS_TOKEN", "FLY_API_BASE_URL", "FLY_FLAPS_BASE_URL"):
            os.environ.pop(name, None)
        fly_token = "flysim_" + secrets.token_urlsafe(24)
        _mask(fly_token)
        os.environ["FLY_API_TOKEN"] = fly_token  # the sweep's client, like the providers, reads it
    else:
        _clear_empty("FLY_API_TOKEN", "FLY_API_BASE_URL", "FLY_FLAPS_BASE_URL")
        fly_token = os.environ.get("FLY_API_TOKEN", "")
        if not fly_token:
            log(f"--fly fly needs FLY_API_TOKEN (an org token for {org})")
            return 2
    _clear_empty("PULUMI_BACKEND_URL", "PULUMI_ACCESS_TOKEN", "PULUMI_CONFIG_PASSPHRASE",
                 "PULUMI_CONFIG_PASSPHRASE_FILE")

    if args.state_dir:
        args.state_dir.mkdir(parents=True, exist_ok=True)
        state_dir, own = args.state_dir.resolve(), False
    else:
        state_dir, own = Path(tempfile.mkdtemp(prefix="ephemeral-cycle.")), True
    run = Run(args=args, stack_name=stack_name, org=org, region=region,
              domain=args.domain or f"{stack_name}.{base_domain}", copied_config=copied,
              state_dir=state_dir, own_state_dir=own)

    with SignalGuard() as guard:
        try:
            env = _engine(run, pulumi_bin, fly_token)
            run.engine = engine_command(pulumi_bin, run.state_dir / "engine")
            if args.cleanup_only:
                log(f"cleanup only: {stack_name}")
                guard.tearing_down = True
                _teardown(run, env, None, guard)
            elif args.fly == "fly":
                try:
                    _cycle(run, env, None, guard, between)
                except Stopped:
                    pass
                finally:
                    guard.tearing_down = True
                    _teardown(run, env, None, guard)
            else:
                with _flysim(run, fly_token) as sim:
                    try:
                        _cycle(run, env, sim.url, guard, between)
                    except Stopped:
                        pass
                    finally:
                        guard.tearing_down = True
                        _teardown(run, env, sim.url, guard)
        except Exception as exc:  # noqa: BLE001 - reported, and the files below are still handled
            run.fail(f"the cycle stopped: {type(exc).__name__}: {exc}")
        finally:
            _cleanup_files(run)
    if guard.received is not None:
        log(f"result: stopped by {guard.received.name}" + (f"; failed: {', '.join(run.failed)}" if run.failed else ""))
        return 128 + guard.received.value
    if run.failed:
        log(f"result: FAILED: {', '.join(run.failed)}")
        return 1
    log("result: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
