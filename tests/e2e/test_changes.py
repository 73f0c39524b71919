"""Preview first, then a change of each setting as preview then up (issue 9, items 1 and 2).

One slice for the module, walked as its user walks it: `pulumi preview` of the new stack, the first
`up`, then each setting changed in turn (volume size, an image, the Clerk keys, the region with and
without protected volumes, the org), every time a preview that shows what will happen, an `up`
that converges (checked in flysim), and a no-change preview that makes no call at all.
The tests run in file order on the same slice; each leaves it converged."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import pytest
from pulumi import automation as auto

from flysim.testing import FlysimServer

from .harness import SliceStack, make_stack
from .userpaths import Plan, mutating_calls, preview, state_resources, state_file_text, view

pytestmark = pytest.mark.e2e

CLERK_SECRET = "sk_sim_first_4c1d2e3f4a5b6c7d"
CLERK_SECRET_ROTATED = "sk_sim_rotated_9e8d7c6b5a4f3e2d"
CLERK_PUBLISHABLE = "pk_sim_0123456789abcdef"
# Every resource a slice has, by resource name: what a preview of a new stack must plan to create.
SLICE_RESOURCES = {
    "slice", "org", "nfs", "nfs-app", "nfs-volume", "nfs-flycast", "nfs-machine", "nfs-self-mount",
    "worker-pool", "worker-pool-app", "worker-pool-flycast", "worker-pool-sweeper",
    "router", "router-app", "router-flycast", "router-shared-v4", "router-v6", "router-certificate",
    "router-secrets", "router-machine", "exec", "exec-app", "exec-flycast", "exec-machine",
    "image-basic", "image-basic-app", "image-basic-flycast", "image-basic-release", "image-basic-manifest",
    "image-coder", "image-coder-app", "image-coder-flycast", "image-coder-release", "image-coder-manifest",
    "control-plane-token", "validate",
}
SERVICE_ROLES = ("nfs", "fly-router", "fly-exec")


@dataclass
class Walk:
    flysim: FlysimServer
    s: SliceStack
    new_stack_plan: Plan | None
    new_stack_preview_error: str | None
    new_stack_preview_calls: list[dict]
    # Settings changed since the last `up` that succeeded, with their previous values (None: unset).
    unapplied: dict[str, str | None] = field(default_factory=dict)

    @property
    def prefix(self) -> str:
        return self.s.stack.name

    def set(self, key: str, value: str, *, secret: bool = False) -> None:
        full = f"artifact-slice:{key}"
        if full not in self.unapplied:
            config = self.s.stack.get_all_config()
            self.unapplied[full] = config[full].value if full in config else None
        self.s.stack.set_config(full, auto.ConfigValue(value=value, secret=secret))

    def preview(self) -> Plan:
        self.flysim.clear_calls()
        return preview(self.s)

    def up(self) -> auto.UpResult:
        self.flysim.clear_calls()
        result = self.s.up()
        assert result.summary.result == "succeeded", result.stdout[-4000:]
        self.unapplied.clear()
        return result

    def restore(self) -> None:
        """After a test that failed before its change was applied: the settings back as they were,
        and the slice converged on them, so the next test starts where it expects to."""
        secret = {"artifact-slice:clerkSecretKey", "artifact-slice:clerkPublishableKey"}
        for key, value in self.unapplied.items():
            if value is None:
                self.s.stack.remove_config(key)
            else:
                self.s.stack.set_config(key, auto.ConfigValue(value=value, secret=key in secret))
        self.unapplied.clear()
        try:
            self.s.up()
        except auto.errors.CommandError:
            pass  # the next test then fails saying why


@pytest.fixture(scope="module")
def walk(pulumi_bin: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Walk]:
    with FlysimServer(orgs=["personal", "other-org"]) as flysim:
        s = make_stack(tmp_path_factory.mktemp("changes"), pulumi_bin, flysim.url, flysim.token,
                       secret_config={"artifact-slice:clerkSecretKey": CLERK_SECRET,
                                      "artifact-slice:clerkPublishableKey": CLERK_PUBLISHABLE})
        # The user's first command on a new stack: `pulumi preview`. Recorded here, before the first
        # `up`, so its test sees a new stack whatever order the tests are run in.
        flysim.clear_calls()
        plan, error = None, None
        try:
            plan = preview(s)
        except auto.errors.CommandError as exc:
            error = str(exc)
        calls = flysim.calls()
        walk = Walk(flysim, s, plan, error, calls)
        # Then the first `up`, which every other test starts from.
        walk.up()
        yield walk
        try:
            s.destroy()
        except auto.errors.CommandError:
            pass  # a test that failed may have left it unconvergeable; the simulator goes with it


@pytest.fixture(autouse=True)
def converged_afterwards(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if "walk" in request.fixturenames:
        walk: Walk = request.getfixturevalue("walk")
        if walk.unapplied:
            walk.restore()


def assert_no_change(w: Walk) -> None:
    """A preview after a converged `up`: nothing to do, and not one API call to find that out."""
    plan = w.preview()
    assert plan.changes() == {}, plan.stdout[-4000:]
    assert w.flysim.calls() == [], f"a no-change preview called the Fly API: {w.flysim.calls()}"


def assert_nothing_replaced(plan: Plan) -> None:
    assert not {n: op for n, op in plan.changes().items() if op in ("replace", "delete", "create")}, plan.changes()


def test_preview_of_a_new_stack_plans_every_create_and_calls_nothing(walk: Walk) -> None:
    if walk.new_stack_preview_error is not None:
        pytest.fail(f"`pulumi preview` of a new stack failed:\n{walk.new_stack_preview_error[-1500:]}")
    plan = walk.new_stack_plan
    assert plan is not None
    missing = SLICE_RESOURCES - set(plan.steps)
    assert not missing, f"the preview does not show {sorted(missing)}; it shows {sorted(plan.steps)}"
    assert {op for op in plan.steps.values()} == {"create"}, plan.changes()
    assert set(plan.summary) == {"create"}, plan.summary
    assert [m for m in plan.messages if m.startswith("error")] == [], plan.messages
    assert walk.new_stack_preview_calls == [], (
        f"the preview of a new stack called the Fly API: {walk.new_stack_preview_calls}")


def test_first_up_then_no_change(walk: Walk) -> None:
    sim = view(walk.flysim, walk.prefix)
    for role in SERVICE_ROLES:
        assert [m["state"] for m in sim.machines(role)] == ["started"], role
    assert [(v["name"], v["size_gb"], v["region"]) for v in sim.volumes()] == [("nfsdata", 1, "syd")]
    assert len(sim.live_tokens()) == 1
    assert_no_change(walk)
    # And a no-change `up` makes no call either.
    walk.up()
    assert walk.flysim.calls() == [], walk.flysim.calls()


def test_volume_size_is_extended_in_place(walk: Walk) -> None:
    before = view(walk.flysim, walk.prefix)
    [volume] = before.volumes()
    [nfs_machine] = before.machines("nfs")
    walk.set("nfsVolumeSizeGb", "3")

    plan = walk.preview()
    assert plan.steps.get("nfs-volume") == "update", plan.changes()
    assert plan.keys.get("nfs-volume") == ["size_gb"], plan.keys  # the preview names what changes
    assert "size_gb: 1 => 3" in plan.stdout, plan.stdout[-3000:]  # and `preview --diff` shows it
    assert_nothing_replaced(plan)
    assert walk.flysim.calls() == [], "the preview called the Fly API"

    walk.up()
    after = view(walk.flysim, walk.prefix)
    assert [(v["id"], v["size_gb"]) for v in after.volumes()] == [(volume["id"], 3)]
    assert [m["id"] for m in after.machines("nfs")] == [nfs_machine["id"]]
    assert not [c for c in mutating_calls(walk.flysim) if "Volumes_create" in c or "Machines_create" in c
                and "-nfs/" in c], mutating_calls(walk.flysim)
    assert walk.s.outputs()["apps"]["nfs"]["volumes"][0]["size_gb"] == 3
    assert_no_change(walk)


def test_image_change_updates_the_machine_in_place(walk: Walk) -> None:
    before = view(walk.flysim, walk.prefix)
    [router] = before.machines("fly-router")
    digest = walk.s.outputs()["apps"]["router"]["image_digest"]
    walk.set("routerImage", "registry.fly.io/artifact-fly-router:2026.11.2")

    plan = walk.preview()
    assert plan.steps.get("router-machine") == "update", plan.changes()
    assert plan.keys.get("router-machine") == ["config"], plan.keys
    assert_nothing_replaced(plan)

    walk.up()
    after = view(walk.flysim, walk.prefix)
    [updated] = after.machines("fly-router")
    assert updated["id"] == router["id"] and updated["state"] == "started"
    assert updated["image"] == "registry.fly.io/artifact-fly-router:2026.11.2"
    out = walk.s.outputs()["apps"]["router"]
    assert out["image"] == "registry.fly.io/artifact-fly-router:2026.11.2"
    assert out["image_digest"].startswith("sha256:") and out["image_digest"] != digest
    assert_no_change(walk)


def test_clerk_key_rotation_reaches_the_router_machine(walk: Walk) -> None:
    before = view(walk.flysim, walk.prefix)
    version = before.app("fly-router")["secrets"]["version"]
    [router] = before.machines("fly-router")
    [exec_machine] = before.machines("fly-exec")
    walk.set("clerkSecretKey", CLERK_SECRET_ROTATED, secret=True)

    plan = walk.preview()
    assert plan.steps.get("router-secrets") == "update", plan.changes()
    assert plan.steps.get("router-machine") == "update", plan.changes()  # it takes the new secrets version
    assert plan.keys.get("router-secrets") == ["values"], plan.keys
    assert "min_secrets_version" in plan.keys.get("router-machine", []), plan.keys
    assert_nothing_replaced(plan)
    assert CLERK_SECRET_ROTATED not in plan.stdout

    walk.up()
    after = view(walk.flysim, walk.prefix)
    new_version = after.app("fly-router")["secrets"]["version"]
    assert new_version > version
    [updated] = after.machines("fly-router")
    assert updated["id"] == router["id"] and updated["instance_id"] != router["instance_id"], \
        "the router machine was not updated after the secrets changed"
    ops = [c["operation"] for c in walk.flysim.calls() if "fly-router" in c["path"] and c["mutating"]]
    assert "Secrets_update" in ops and "Machines_update" in ops[ops.index("Secrets_update"):], ops
    machine_state = state_resources(walk.s)["router-machine"]["outputs"]
    assert int(machine_state["min_secrets_version"]) == new_version
    assert [m["instance_id"] for m in after.machines("fly-exec")] == [exec_machine["instance_id"]]
    assert CLERK_SECRET_ROTATED not in state_file_text(walk.s)
    assert_no_change(walk)


def test_region_change_moves_the_nfs_machine_and_its_volume(walk: Walk) -> None:
    walk.set("primaryRegion", "ams")

    plan = walk.preview()
    for name in ("nfs-volume", "nfs-machine", "router-machine", "exec-machine"):
        assert plan.steps.get(name) == "replace", f"{name}: {plan.changes()}"
    # The keys, where a provider's diff decides (the NFS machine goes with its volume, by the engine's rule
    # for what depends on a delete-before-replace).
    for name in ("nfs-volume", "router-machine", "exec-machine"):
        assert "region" in plan.keys.get(name, []), plan.keys

    walk.up()
    sim = view(walk.flysim, walk.prefix)
    [volume] = sim.volumes()  # exactly one: the old one is gone
    assert (volume["name"], volume["region"], volume["size_gb"]) == ("nfsdata", "ams", 3)
    [nfs_machine] = sim.machines("nfs")
    assert nfs_machine["region"] == "ams" and nfs_machine["state"] == "started"
    assert [m["volume"] for m in nfs_machine["mounts"]] == [volume["id"]]
    assert volume["attached_machine_id"] == nfs_machine["id"]
    for role in ("fly-router", "fly-exec"):
        assert [(m["region"], m["state"]) for m in sim.machines(role)] == [("ams", "started")], role
    out = walk.s.outputs()["apps"]
    assert out["nfs"]["volumes"][0]["id"] == volume["id"] and out["nfs"]["region"] == "ams"
    assert_no_change(walk)


def test_region_change_of_a_protected_volume_is_refused_saying_what_to_do(walk: Walk) -> None:
    walk.set("protectVolumes", "true")
    walk.up()
    assert mutating_calls(walk.flysim) == []  # protecting is a change of the state only
    volume_before = view(walk.flysim, walk.prefix).volumes()

    try:
        walk.set("primaryRegion", "syd")
        walk.flysim.clear_calls()
        with pytest.raises(auto.errors.CommandError) as refused:
            walk.s.preview()
            walk.s.up()
        message = str(refused.value)
        assert "protectVolumes" in message, message[-3000:]
        assert mutating_calls(walk.flysim) == [], "a refused region change changed something at Fly"
        assert view(walk.flysim, walk.prefix).volumes() == volume_before
    finally:  # back to the region the volume is in, unprotected, whatever happened above
        walk.unapplied.clear()
        walk.s.stack.set_config("artifact-slice:primaryRegion", auto.ConfigValue("ams"))
        walk.s.stack.set_config("artifact-slice:protectVolumes", auto.ConfigValue("false"))
    walk.up()
    assert mutating_calls(walk.flysim) == []
    assert_no_change(walk)


def test_org_change_is_refused_with_what_to_do(walk: Walk) -> None:
    """As docs/slice.md states: app names are global and the volume can't follow, so a change of org is
    refused, naming the setting, before anything changes at Fly."""
    before = view(walk.flysim, walk.prefix)
    walk.set("org", "other-org")
    walk.flysim.clear_calls()
    with pytest.raises(auto.errors.CommandError) as refused:
        preview(walk.s)
        walk.up()
    message = str(refused.value)
    assert "artifact-slice:org" in message and "Traceback" not in message, message[-3000:]
    assert mutating_calls(walk.flysim) == [], "a refused org change changed something at Fly"
    after = view(walk.flysim, walk.prefix)
    assert {n: a["org_slug"] for n, a in after.apps.items()} == {n: a["org_slug"] for n, a in before.apps.items()}
    assert after.live_tokens() == before.live_tokens()

    walk.set("org", "personal")
    assert_no_change(walk)
    walk.unapplied.clear()  # back where it was: nothing to apply


def test_destroy_leaves_no_app_and_no_live_token(walk: Walk) -> None:
    walk.s.destroy()
    sim = view(walk.flysim, walk.prefix)
    assert sim.apps == {}
    assert sim.tokens() and sim.live_tokens() == []
