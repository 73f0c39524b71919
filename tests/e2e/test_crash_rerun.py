"""A kill at any point, the recovery docs/real-slice.md documents, and a rerun (issue 9, item 3).

`pulumi up` runs as the user runs it (the CLI, with its preview), in a session of its own; a
flysim fault holds one call in flight (an app or volume create whose mutation Fly already made, the
wait for a new machine to start, the org-token mint) and the test SIGKILLs every process of the session: engine,
language host, program and providers. Then docs/real-slice.md's "When a run is interrupted" commands, run as written,
and the checks: nothing twice, nothing the state doesn't know (the org token included), and, after
the token's kill, `destroy` leaves no app and no live token."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from flysim.testing import FlysimServer

from .harness import make_stack
from .userpaths import (Cli, SliceView, doc_block, kill_run, pending_operations, resource_name,
                        state_resources, view, wait_until)

pytestmark = pytest.mark.e2e

RECOVERY_PAGE, RECOVERY_SECTION = "docs/real-slice.md", "When a run is interrupted"
HANG = 30.0  # longer than any test waits; the run is killed long before


@dataclass(frozen=True)
class KillPoint:
    """``fault`` holds the call in flight; ``reached`` says it is; ``resource`` is the resource whose
    create the state then records as pending."""

    fault: Callable[[str], dict[str, Any]]
    reached: Callable[[SliceView, FlysimServer], bool]
    resource: str


def _fault_fired(flysim: FlysimServer) -> bool:
    return flysim.faults() == []  # a count=1 fault leaves the list when it fires


KILL_POINTS = {
    # Fly made the app; the answer never came.
    "app-create": KillPoint(
        fault=lambda p: {"operation": "Apps_create", "kind": "hang", "after_commit": True, "seconds": HANG, "count": 1},
        reached=lambda sim, _: bool(sim.apps), resource="*-app"),
    "volume-create": KillPoint(
        fault=lambda p: {"operation": "Volumes_create", "app": f"{p}-nfs", "kind": "hang", "after_commit": True,
                         "seconds": HANG, "count": 1},
        reached=lambda sim, _: f"{sim.prefix}-nfs" in sim.apps and bool(sim.volumes()), resource="nfs-volume"),
    # The router machine exists and is booting; the run is waiting for it to start.
    "machine-wait": KillPoint(
        fault=lambda p: {"operation": "Machines_wait", "app": f"{p}-fly-router", "kind": "hang", "seconds": HANG,
                         "count": 1},
        reached=lambda sim, fly: _fault_fired(fly), resource="router-machine"),
    # Fly minted the token (a live `deploy_organization` token, valid for a year); the answer never came.
    # (The token's create lists the org's tokens right before it mints: the fault names the mutation.)
    "token-mint": KillPoint(
        fault=lambda p: {"operation": "GraphQL", "graphql_field": "createLimitedAccessToken", "kind": "hang",
                         "after_commit": True, "seconds": HANG, "count": 1},
        reached=lambda sim, _: bool(sim.tokens()), resource="control-plane-token"),
}


@pytest.fixture(scope="module")
def flysim_module() -> Iterator[FlysimServer]:
    with FlysimServer(orgs=["personal"]) as server:
        yield server


def _clear_cut_short_metadata(s: Any) -> None:
    """The recovery page's step for a kill that cut short the write of the state's metadata (every command then
    fails with `failed to load checkpoint: EOF`): on a file backend, delete the zero-byte
    `.pulumi/stacks/<project>/<stack>.json.attrs`. Only an empty file is touched."""
    backend = Path(s.stack.workspace.env_vars["PULUMI_BACKEND_URL"].removeprefix("file://"))
    for attrs in backend.glob(f".pulumi/stacks/*/{s.stack.name}.json.attrs"):
        if attrs.stat().st_size == 0:
            print(f"the kill cut short {attrs.name}: deleted, as docs/real-slice.md says")
            attrs.unlink()


def _recover(cli: Cli, *, check_restore: bool) -> None:
    """The recovery commands of docs/real-slice.md, each run as written (PULUMI_SKIP_CONFIRMATIONS stands for the
    user answering "yes"), in the project directory, where the stack is the selected one. With
    ``check_restore``, the page's way back (`pulumi stack import` of the saved copy) is run too,
    right after the copy is made, and must keep what the copy holds."""
    commands = doc_block(RECOVERY_PAGE, RECOVERY_SECTION)
    assert any(c.startswith("pulumi up") for c in commands), commands
    for command in commands:
        proc = cli.shell(command, extra_env={"PULUMI_SKIP_CONFIRMATIONS": "true"})
        if proc.returncode != 0:
            pytest.fail(f"`{command}` failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
        if check_restore and command.startswith("pulumi stack export --file"):
            saved = command.split("--file", 1)[1].split()[0]
            before = set(state_resources(cli.s))
            restore = cli.shell(f"pulumi stack import --file {saved}")
            if restore.returncode != 0:
                pytest.fail(f"`pulumi stack import --file {saved}` failed:\n{restore.stdout[-3000:]}{restore.stderr[-3000:]}")
            assert set(state_resources(cli.s)) == before


def _assert_one_of_each_and_known(s: Any, sim: SliceView) -> None:
    """No duplicate (one machine per service, one volume, one live token, no worker) and no orphan
    (every app, machine, volume and token at Fly is one the state records)."""
    state = state_resources(s)
    assert set(sim.apps) == {r["id"] for name, r in state.items() if name.endswith("-app")}, \
        f"apps at Fly {sorted(sim.apps)}; in the state {sorted(n for n in state if n.endswith('-app'))}"
    for role, resource in (("nfs", "nfs-machine"), ("fly-router", "router-machine"), ("fly-exec", "exec-machine")):
        machines = sim.machines(role)
        assert [m["id"] for m in machines] == [state[resource]["outputs"]["machine_id"]], \
            f"{role}: machines at Fly {[(m['id'], m['name'], m['state']) for m in machines]}"
    assert sim.machines("worker-pool") == []
    volumes = sim.volumes()
    assert [v["id"] for v in volumes] == [state["nfs-volume"]["outputs"]["volume_id"]], volumes
    tokens = sim.live_tokens()
    assert [t["id"] for t in tokens] == [state["control-plane-token"]["outputs"]["token_id"]], \
        f"live org tokens named {sim.prefix}-control-plane: {tokens}"


@pytest.mark.parametrize("point", list(KILL_POINTS))
def test_kill_then_documented_recovery_then_rerun(point: str, flysim_module: FlysimServer, pulumi_bin: Path,
                                                  tmp_path: Path) -> None:
    flysim = flysim_module
    flysim.clear_faults()
    kill = KILL_POINTS[point]
    s = make_stack(tmp_path, pulumi_bin, flysim.url, flysim.token,
                   secret_config={"artifact-slice:clerkSecretKey": "sk_sim_crash_5e6f7a8b9c0d"})
    prefix = s.stack.name
    cli = Cli(s, tmp_path)

    flysim.add_fault(**kill.fault(prefix))
    run = cli.start("up", "--yes", name="up")
    try:
        wait_until(lambda: kill.reached(view(flysim, prefix), flysim), what=f"{point} in flight", alive=run,
                   log=lambda: cli.log("up"))
    finally:
        kill_run(run)
        flysim.clear_faults()

    _clear_cut_short_metadata(s)
    # What the user finds: the state records the interrupted create as pending.
    pending = [resource_name(op["resource"]["urn"]) for op in pending_operations(s)]
    if kill.resource.startswith("*"):
        assert any(name.endswith(kill.resource[1:]) for name in pending), pending
    else:
        assert kill.resource in pending, pending

    flysim.clear_calls()
    _recover(cli, check_restore=point == "app-create")
    print("\n".join(cli.runs))  # shown when an assertion below fails
    print("calls of the recovery:", [f"{c['method']} {c['path']} {c.get('graphql', '')} {c['status']}"
                                     for c in flysim.calls()])
    assert pending_operations(s) == []
    sim = view(flysim, prefix)
    _assert_one_of_each_and_known(s, sim)
    for role in ("nfs", "fly-router", "fly-exec"):
        assert [m["state"] for m in sim.machines(role)] == ["started"], role
    if point != "token-mint":
        return  # what follows is about the token; a destroy after the other kills adds only time

    token_value = s.stack.outputs()["controlPlaneToken"].value
    s.destroy()
    sim = view(flysim, prefix)
    assert sim.apps == {}, sorted(sim.apps)
    assert len(sim.tokens()) >= 2 and sim.live_tokens() == [], sim.tokens()  # the killed run's one included
    # The slice's token no longer opens anything.
    with httpx.Client(base_url=flysim.url, headers={"Authorization": f"Bearer {token_value}"}) as client:
        assert client.get("/v1/apps", params={"org_slug": "personal"}).status_code == 401
    s.remove()


def test_state_cut_short_by_a_kill_is_read_again_without_its_empty_attrs_file(pulumi_bin: Path,
                                                                              tmp_path: Path) -> None:
    """A kill while the file backend writes the state can leave the state's metadata file empty, and
    every command then fails with "failed to load checkpoint: EOF"; docs/real-slice.md's fix: delete it."""
    s = make_stack(tmp_path, pulumi_bin, "http://127.0.0.1:9", "unused-token")
    cli = Cli(s, tmp_path)
    backend = Path(s.stack.workspace.env_vars["PULUMI_BACKEND_URL"].removeprefix("file://"))
    [attrs] = backend.glob(f".pulumi/stacks/*/{s.stack.name}.json.attrs")
    attrs.write_bytes(b"")  # what the kill left
    broken = cli.shell("pulumi stack export")
    assert broken.returncode != 0 and "failed to load checkpoint: EOF" in broken.stderr, broken.stderr
    assert attrs.stat().st_size == 0 and attrs.name.endswith(".json.attrs")  # as docs/real-slice.md describes it
    attrs.unlink()
    assert cli.shell("pulumi stack export").returncode == 0
    assert cli.shell("pulumi cancel --yes").returncode == 0
