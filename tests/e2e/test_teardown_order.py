"""`pulumi destroy` follows the runbook's teardown order, read from flysim's call log: worker machines
(also those made outside Pulumi), router and exec machines, the NFS machine, the volume, the control
plane's token, the apps."""

from __future__ import annotations

from pathlib import Path

import pytest

from fly import FlyClient, FlyConnection

from .harness import make_stack

pytestmark = pytest.mark.e2e


def test_destroy_follows_the_runbook_order(tmp_path: Path, pulumi_bin: Path, flysim) -> None:
    s = make_stack(tmp_path, pulumi_bin, flysim.url, flysim.token,
                   config={"artifact-slice:validateInUp": "false"})
    prefix = s.stack.name
    assert s.up().summary.result == "succeeded"
    template = s.outputs()["apps"]["worker_pool"]["machine_template"]
    # Workers made by fly-exec, outside Pulumi.
    with FlyClient(FlyConnection.resolve(token=flysim.token, api_base_url=flysim.url, flaps_base_url=flysim.url,
                                         environ={})) as fly:
        for n in (1, 2):
            fly.create_machine(f"{prefix}-worker-pool", template, name=f"worker-{n}", region="syd")

    flysim.clear_calls()
    s.destroy()
    calls = [c for c in flysim.calls() if c["mutating"] and c["status"] < 400]

    def when(predicate) -> list[int]:
        return [i for i, c in enumerate(calls) if predicate(c)]

    def machine_delete(app: str):
        return lambda c: c["operation"] == "Machines_delete" and c["path"].startswith(f"/v1/apps/{prefix}-{app}/")

    stages = {
        "worker machines": when(machine_delete("worker-pool")),
        "router and exec machines": when(machine_delete("fly-router")) + when(machine_delete("fly-exec")),
        "NFS machine": when(machine_delete("nfs")),
        "volume": when(lambda c: c["method"] == "DELETE" and "/volumes/" in c["path"]),
        "token": when(lambda c: c.get("graphql") == "mutation"),
        "apps": when(lambda c: c["operation"] == "Apps_delete"),
    }
    assert len(stages["worker machines"]) == 2 and len(stages["router and exec machines"]) == 2
    assert len(stages["NFS machine"]) == 1 and len(stages["volume"]) == 1 and len(stages["token"]) == 1
    assert len(stages["apps"]) == 6
    names = list(stages)
    for earlier, later in zip(names, names[1:]):
        assert max(stages[earlier]) < min(stages[later]), (earlier, later, [
            f"{c['method']} {c['path']}" for c in calls])
    assert not [a for a in flysim.state()["apps"] if a["name"].startswith(prefix + "-")]
