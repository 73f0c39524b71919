"""Setup and teardown through the Automation API on the real engine, against flysim: what Fly ends up
holding, the health gate, the rollback of a failed deploy, and where the credentials went (nowhere).
Each deploy runs as the wizard's and the CLI's do: a job process started by ``start_deploy``."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

import enginejob
from flysim.testing import FlysimServer
from selfhosted.progress import Progress, Step
from selfhosted.runner import SetupResult, deploy_outcome, run_teardown, start_deploy
from selfhosted.settings import Credentials, DeploySettings, parse
from selfhosted.target import Target, flysim_target
from tests.pgserver import TeamBackend

from selfhosted_helpers import scan, secret_values

pytestmark = pytest.mark.e2e


def setup(target: Target, settings: DeploySettings, credentials: Credentials, progress: Progress,
          **options: Any) -> SetupResult:
    """A deploy the way the wizard and the CLI start one, waited for (state: the test's own directory)."""
    runner = enginejob.Runner()
    return deploy_outcome(start_deploy(runner, target, settings, credentials, progress, **options),
                          timeout=300, runner=runner)


def _apps(flysim: FlysimServer, prefix: str) -> dict[str, dict]:
    return {a["name"]: a for a in flysim.state()["apps"] if a["name"].startswith(prefix + "-")}


def test_setup_makes_the_pair_healthy_and_keeps_no_credential(
        flysim: FlysimServer, engine: Path, job_tmp: Path, state_dir: Path, tmp_path: Path, creds: dict[str, str],
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    settings, credentials = parse({"prefix": "alice", "region": "ams"}, {**creds, "fly_token": flysim.token})
    backend = tmp_path / "backend"  # a backend of the user's, kept, so the test can read the state
    backend.mkdir()
    steps: list[Step] = []
    result = setup(flysim_target(flysim.url), settings, credentials, steps.append, backend_url=f"file://{backend}",
                   passphrase="the-users-passphrase", health_timeout=30)
    assert result.ok, result.failure
    assert result.relay_url == "https://alice-relay.fly.dev"
    assert result.webhook_url == "https://alice-relay.fly.dev/webhooks/twilio"
    assert "https://alice-relay.fly.dev/webhooks/twilio" in result.next_step
    texts = [s.text for s in steps]
    assert "token ok: organization personal (personal), can create apps" in texts
    assert "health: machine checks passing, relay /health ok" in texts

    # What Fly holds: the relay public and on Flycast, the VM private with its volume, one machine each.
    apps = _apps(flysim, "alice")
    assert set(apps) == {"alice-relay", "alice-vm"}
    relay, vm = apps["alice-relay"], apps["alice-vm"]
    assert sorted(ip["type"] for ip in relay["ip_assignments"]) == ["private_v6", "shared_v4", "v6"]
    assert [ip["type"] for ip in vm["ip_assignments"]] == ["private_v6"]
    assert [(v["name"], v["size_gb"], v["region"]) for v in vm["volumes"]] == [("agentdata", 1, "ams")]
    assert len(relay["machines"]) == len(vm["machines"]) == 1
    assert relay["secrets"]["names"] == ["TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN"]
    assert vm["secrets"]["names"] == ["ANTHROPIC_API_KEY"]

    # The machine configs as the Machines API holds them: Flycast wiring, restart policy, checks.
    with flysim.client() as http:
        relay_m = http.get(f"/v1/apps/alice-relay/machines/{relay['machines'][0]['id']}").json()
        vm_m = http.get(f"/v1/apps/alice-vm/machines/{vm['machines'][0]['id']}").json()
    assert relay_m["config"]["env"]["CLAUDE_HOST"] == "http://alice-vm.flycast"
    assert vm_m["config"]["env"]["RELAY_CALLBACK_URL"] == "http://alice-relay.flycast"
    assert relay_m["config"]["restart"]["policy"] == vm_m["config"]["restart"]["policy"] == "always"
    assert relay_m["config"]["checks"]["health"]["path"] == "/health"
    assert [c["status"] for c in relay_m["checks"] + vm_m["checks"]] == ["passing", "passing"]
    assert vm_m["config"]["mounts"][0]["volume"] == vm["volumes"][0]["id"]
    assert "services" not in relay_m["config"] or all(
        p["port"] in (80, 443) for s in relay_m["config"]["services"] for p in s["ports"])
    # The public /health was probed as Fly's proxy would be reached.
    assert any(c.get("operation") == "PublicHTTP" and c.get("host") == "alice-relay.fly.dev"
               for c in flysim.calls())

    # No credential anywhere: the state (secrets only as ciphertext, the token not at all), the job's
    # temp files (removed), the progress, the logs, the outputs.
    values = secret_values(creds, flysim.token)
    assert scan(values, backend, job_tmp, state_dir) == []
    [state_file] = [p for p in backend.rglob("alice.json") if ".history" not in p.parts]
    resources = json.loads(state_file.read_text())["checkpoint"]["latest"]["resources"]
    secrets_resources = [r for r in resources if r["urn"].endswith("-secrets")]
    assert len(secrets_resources) == 2
    assert all(r["inputs"]["values"].get("ciphertext") for r in secrets_resources)  # encrypted, by the passphrase
    assert not [r["urn"] for r in resources if "fly_token" in (r.get("inputs") or {})]  # the token is no input
    assert list((state_dir / "jobs").iterdir()) == []  # the job's directory went with it
    shown = json.dumps([s.as_dict() for s in steps]) + caplog.text + json.dumps(result.outputs)
    assert not [name for name, value in values.items() if value in shown]

    # Teardown: VM first, then the relay; a second run finds them already gone.
    steps.clear()
    assert run_teardown(flysim_target(flysim.url), settings, flysim.token, steps.append) == []
    assert _apps(flysim, "alice") == {}
    order = [s.text for s in steps if s.text.startswith("removing ")]
    assert order == ["removing alice-vm", "removing alice-relay"]
    steps.clear()
    assert run_teardown(flysim_target(flysim.url), settings, flysim.token, steps.append) == []
    assert [s.text for s in steps][:2] == ["alice-vm: already gone", "alice-relay: already gone"]


def test_failing_health_says_what_failed_and_leaves_nothing(flysim: FlysimServer, engine: Path, job_tmp: Path,
                                                            state_dir: Path, creds: dict[str, str]) -> None:
    settings, credentials = parse({"prefix": "bob", "vm_image": "registry.fly.io/artifact-agent-vm:unhealthy"},
                                  {**creds, "fly_token": flysim.token})
    steps: list[Step] = []
    result = setup(flysim_target(flysim.url), settings, credentials, steps.append, health_timeout=30)
    assert not result.ok
    assert "bob-vm: check 'health' is critical (dial tcp [fdaa::3]:8080: connect: connection refused)" in result.failure
    assert result.left_behind == []
    assert "rolled back: no app of 'bob' is left" in [s.text for s in steps]
    assert _apps(flysim, "bob") == {}
    assert scan(secret_values(creds, flysim.token), job_tmp, state_dir) == []


def test_existing_apps_without_their_state_are_not_taken_over(flysim: FlysimServer, engine: Path, job_tmp: Path,
                                                               creds: dict[str, str]) -> None:
    with flysim.client() as http:
        http.post("/v1/apps", json={"app_name": "carol-vm", "org_slug": "personal"}).raise_for_status()
    settings, credentials = parse({"prefix": "carol"}, {**creds, "fly_token": flysim.token})
    flysim.clear_calls()
    result = setup(flysim_target(flysim.url), settings, credentials, lambda _s: None)
    assert not result.ok and "carol-vm already exist in 'personal': tear them down first" in result.failure
    assert result.code == "already_exists"
    assert not [c for c in flysim.calls() if c.get("mutating")]


def test_with_the_users_backend_a_second_setup_changes_nothing(flysim: FlysimServer, engine: Path, job_tmp: Path,
                                                               team_backend: TeamBackend, creds: dict[str, str],
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI's `--backend` as a team uses it: a PostgreSQL backend (docs/team-backend.md) on a real server.
    A second deploy changes nothing; while another machine's update holds the stack, a deploy waits, says for
    whom, and runs once it is free, or is refused in words when the wait runs out."""
    import threading

    from enginejob.backend_lock import stack_lock

    settings, credentials = parse({"prefix": "jill"}, {**creds, "fly_token": flysim.token})
    target = flysim_target(flysim.url)
    backend = team_backend.url
    first = setup(target, settings, credentials, lambda _s: None, backend_url=backend, passphrase="pass-phrase-1")
    assert first.ok, first.failure
    flysim.clear_calls()
    steps: list[Step] = []
    second = setup(target, settings, credentials, steps.append, backend_url=backend, passphrase="pass-phrase-1")
    assert second.ok, second.failure
    assert [c for c in flysim.calls() if c.get("mutating")] == []  # an up with nothing to change changes nothing
    assert not [s for s in steps if s.status == "running" and s.key.startswith("up:")]
    stored = team_backend.stored()  # the state is in the table, its secrets only as ciphertext
    assert "/selfhosted/jill" in stored and "ciphertext" in stored
    assert [name for name, value in secret_values(creds, flysim.token).items() if value in stored] == []

    # Another machine's update of the stack holds it: the deploy waits, says for whom, and runs when it is free.
    steps.clear()
    waiting, held = threading.Event(), threading.Event()

    def other_update() -> None:
        with stack_lock(backend, "selfhosted", settings.prefix, title="a CI update", wait=0):
            held.set()
            waiting.wait(timeout=120)

    holder = threading.Thread(target=other_update)
    holder.start()
    assert held.wait(timeout=30)

    def progress(step: Step) -> None:
        steps.append(step)
        if step.text.startswith("waiting: a CI update by "):
            waiting.set()

    after = setup(target, settings, credentials, progress, backend_url=backend, passphrase="pass-phrase-1")
    holder.join(timeout=30)
    assert waiting.is_set() and after.ok, after.failure

    # ... and when the wait runs out, is refused in words, having changed nothing.
    monkeypatch.setenv("ARTIFACT_STACK_LOCK_WAIT", "0.3")
    steps.clear()
    with stack_lock(backend, "selfhosted", settings.prefix, title="a CI update", wait=0):
        busy = setup(target, settings, credentials, steps.append, backend_url=backend, passphrase="pass-phrase-1")
    assert not busy.ok and busy.code == "busy" and "a CI update by " in busy.failure
    assert any(s.text.startswith("waiting: a CI update by ") for s in steps)
    assert [c for c in flysim.calls() if c.get("mutating")] == []
    assert run_teardown(target, settings, flysim.token, lambda _s: None) == []
