"""Two flysim servers on one state file (the self-hosted wizard and a CLI each embed one on the same
rehearsal account): each sees the apps the other made and removed, and neither's save clobbers the other's."""

from __future__ import annotations

import json
from pathlib import Path

from flysim.testing import FlysimServer


def _names(fly: FlysimServer) -> set[str]:
    return {a["name"] for a in fly.state()["apps"]}


def test_two_servers_share_one_account_app_by_app(tmp_path: Path) -> None:
    state = tmp_path / "rehearsal.json"
    with FlysimServer(state_file=str(state), rate_limit=False) as a, \
            FlysimServer(state_file=str(state), rate_limit=False) as b, a.client() as ca, b.client() as cb:
        ca.post("/v1/apps", json={"app_name": "one-relay", "org_slug": "personal"}).raise_for_status()
        # b loaded the file before a's app existed: its own create must not drop a's from the file.
        cb.post("/v1/apps", json={"app_name": "two-relay", "org_slug": "personal"}).raise_for_status()
        assert {"one-relay", "two-relay"} <= set(json.loads(state.read_text())["apps"])
        # Each sees the other's app at its next request: a create of a taken name is refused.
        assert cb.get("/v1/apps/one-relay").status_code == 200
        assert cb.post("/v1/apps", json={"app_name": "one-relay", "org_slug": "personal"}).status_code in (409, 422)
        vol = cb.post("/v1/apps/two-relay/volumes", json={"name": "agentdata", "region": "ams", "size_gb": 1})
        vol.raise_for_status()
        assert [v["id"] for v in ca.get("/v1/apps/two-relay/volumes").json()] == [vol.json()["id"]]
        # A removal is seen too, and not undone by the other's next save.
        ca.delete("/v1/apps/one-relay").raise_for_status()
        cb.post("/v1/apps", json={"app_name": "three-relay", "org_slug": "personal"}).raise_for_status()
        assert _names(a) == _names(b) == {"two-relay", "three-relay"}
        assert set(json.loads(state.read_text())["apps"]) == {"two-relay", "three-relay"}
