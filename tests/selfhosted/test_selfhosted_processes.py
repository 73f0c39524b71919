"""Process death and many callers, as they really happen: the wizard and the CLI as subprocesses, killed
(SIGKILL) or stopped (SIGTERM, Ctrl-C) while a machine create hangs at flysim, and several of them on one
prefix. After each: no process of the job left (by its marker in /proc and by its process group), no job
directory left, no credential readable on disk, and flysim holding the whole pair healthy or nothing of it.

One flysim for the module; one deploy per test."""

from __future__ import annotations

import contextlib
import html
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest

from enginejob import procs
from flysim.testing import FlysimServer

from selfhosted_helpers import scan, secret_values

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[2]
GONE_WITHIN = 180  # a rollback through the engine after a hung call (4 s), on a shared 2-core machine


@pytest.fixture(scope="module")
def sim() -> Iterator[FlysimServer]:
    with FlysimServer(orgs=["personal"]) as server:
        yield server


@pytest.fixture
def where(tmp_path: Path, state_dir: Path, engine: Path, sim: FlysimServer, creds: dict[str, str]) -> dict[str, Any]:
    """The environment of this test's wizard and CLI processes: its own state and temp directories."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = {**os.environ, "PYTHONPATH": str(REPO), "TMPDIR": str(tmp), "ARTIFACT_STATE_DIR": str(state_dir),
           "ARTIFACT_PULUMI_BIN": str(engine), "FLY_API_TOKEN": sim.token,
           "ANTHROPIC_API_KEY": creds["anthropic_api_key"], "TWILIO_ACCOUNT_SID": creds["twilio_account_sid"],
           "TWILIO_AUTH_TOKEN": creds["twilio_auth_token"], "TWILIO_WHATSAPP_NUMBER": creds["twilio_whatsapp_number"]}
    return {"env": env, "tmp": tmp, "state": state_dir, "values": secret_values(creds, sim.token)}


# -- helpers -----------------------------------------------------------------------------------------------

@contextlib.contextmanager
def _phone() -> Iterator[tuple[Any, Any]]:
    """Debian's Chromium at a phone's viewport (as the browser tests drive it), and a screenshot taker
    (artifacts/screenshots/<test>/)."""
    from playwright.sync_api import sync_playwright

    test = os.environ.get("PYTEST_CURRENT_TEST", "test").split(" ")[0].rsplit("::", 1)[-1]
    shots = REPO / "artifacts" / "screenshots" / re.sub(r"[^A-Za-z0-9_.-]+", "_", test)
    shots.mkdir(parents=True, exist_ok=True)
    for old in shots.glob("*.png"):
        old.unlink()
    taken = [0]

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", headless=True,
                                             args=["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"])
        context = browser.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True,
                                      has_touch=True)
        page = context.new_page()
        page.set_default_timeout(GONE_WITHIN * 1000)

        def shot(name: str) -> None:
            taken[0] += 1
            page.screenshot(path=str(shots / f"{taken[0]:02d}-{name}.png"), full_page=True)

        try:
            yield page, shot
        finally:
            browser.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wizard(sim: FlysimServer, where: dict[str, Any], *extra: str) -> tuple[subprocess.Popen[str], str]:
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "selfhosted", "wizard", "--flysim-url", sim.url, "--port", str(port),
         "--health-timeout", "30", *extra], env=where["env"], cwd=REPO, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    assert process.stdout is not None
    said: list[str] = []
    for line in process.stdout:  # it says where it listens once it is about to
        said.append(line)
        if line.startswith("wizard: "):
            break
    # The rest of what it (and its jobs, on stderr) says, read as it comes: a full pipe would stall them.
    process.said = said  # type: ignore[attr-defined]
    threading.Thread(target=lambda: said.extend(process.stdout), daemon=True).start()  # type: ignore[arg-type]
    with httpx.Client() as http:  # then it answers (the wait is the server's readiness, not a fixed sleep)
        deadline = time.monotonic() + 30
        while True:
            try:
                if http.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the wizard did not start"
                time.sleep(0.05)
    return process, url


def _form(sim: FlysimServer, creds: dict[str, str], prefix: str) -> dict[str, str]:
    return {"fly_token": sim.token, "prefix": prefix, "org": "personal", "region": "ams", "channel": "whatsapp",
            "anthropic_api_key": creds["anthropic_api_key"], "twilio_account_sid": creds["twilio_account_sid"],
            "twilio_auth_token": creds["twilio_auth_token"], "twilio_whatsapp_number": creds["twilio_whatsapp_number"]}


def _plan(http: httpx.Client, form: dict[str, str]) -> str:
    answer = http.post("/plan", data=form)
    assert answer.status_code == 200, answer.text[-2000:]
    return re.search(r'action="/jobs/([^/]+)/deploy"', answer.text).group(1)


class Watcher:
    """A page's event stream, read on a thread: the steps as they come, and the `end` event."""

    def __init__(self, url: str, job: str) -> None:
        self.texts: list[str] = []
        self.end: dict[str, Any] | None = None
        self.error: Exception | None = None
        self.changed = threading.Condition()
        self._thread = threading.Thread(target=self._read, args=(url, job), daemon=True)
        self._thread.start()

    def _read(self, url: str, job: str) -> None:
        try:
            with httpx.stream("GET", f"{url}/jobs/{job}/events", timeout=GONE_WITHIN) as stream:
                kind = ""
                for line in stream.iter_lines():
                    if line.startswith("event: "):
                        kind = line[7:]
                    elif line.startswith("data: "):
                        data = json.loads(line[6:])
                        with self.changed:
                            if kind == "step":
                                self.texts.append(data["text"])
                            elif kind == "end":
                                self.end = data
                            self.changed.notify_all()
        except httpx.HTTPError as exc:  # the server went away
            self.error = exc
        finally:
            with self.changed:
                self.changed.notify_all()

    def wait_for(self, text: str, timeout: float = 120) -> None:
        with self.changed:
            assert self.changed.wait_for(lambda: any(text in t for t in self.texts) or not self._thread.is_alive(),
                                         timeout), f"no step {text!r}: {self.texts}"
        assert any(text in t for t in self.texts), f"no step {text!r}: {self.texts}"

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)


def _job_processes(state: Path) -> dict[int, str]:
    return procs.marked(str(state / "jobs"))


def _group(pgid: int) -> list[int]:
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if fields[0] != "Z" and int(fields[2]) == pgid:
                members.append(int(entry.name))
    return members


def _job_leaders(state: Path) -> list[int]:
    """The job processes themselves (each leads the session and process group of its own)."""
    leaders = []
    for pid in _job_processes(state):
        try:
            if b"enginejob.child" in Path(f"/proc/{pid}/cmdline").read_bytes():
                leaders.append(pid)
        except OSError:
            pass
    return leaders


def _wait_all_gone(state: Path, groups: list[int]) -> None:
    """Until no process carries a job's marker or is in a job's process group (bounded)."""
    deadline = time.monotonic() + GONE_WITHIN
    while _job_processes(state) or any(_group(g) for g in groups):
        assert time.monotonic() < deadline, f"still there: {_job_processes(state)}"
        time.sleep(0.2)


def _pair(sim: FlysimServer, prefix: str) -> dict[str, dict[str, Any]]:
    return {a["name"]: a for a in sim.state()["apps"] if a["name"] in (f"{prefix}-relay", f"{prefix}-vm")}


def _healthy_pair_or_nothing(sim: FlysimServer, prefix: str) -> str:
    apps = _pair(sim, prefix)
    if not apps:
        return "nothing"
    assert set(apps) == {f"{prefix}-relay", f"{prefix}-vm"}, apps
    for app in apps.values():
        [machine] = [m for m in app["machines"] if m["state"] != "destroyed"]
        assert machine["state"] == "started" and set(machine["checks"].values()) == {"passing"}, machine
    [volume] = apps[f"{prefix}-vm"]["volumes"]
    [vm] = apps[f"{prefix}-vm"]["machines"]
    assert vm["mounts"] == [{"volume": volume["id"], "path": vm["mounts"][0]["path"]}]
    return "healthy"


def _nothing_left_on_disk(where: dict[str, Any]) -> None:
    jobs = where["state"] / "jobs"
    assert not jobs.exists() or list(jobs.iterdir()) == []
    assert [str(p) for p in where["tmp"].rglob("*")] == []
    assert scan(where["values"], where["state"], where["tmp"]) == []


def _hang_vm_machine_create(sim: FlysimServer, prefix: str) -> None:
    sim.add_fault(kind="hang", operation="Machines_create", app=f"{prefix}-vm", seconds=4, count=1)


# -- the wizard ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["sigkill", "sigterm"])
def test_the_wizard_stopped_mid_deploy(sig: signal.Signals, sim: FlysimServer, where: dict[str, Any],
                                       creds: dict[str, str]) -> None:
    """Killed outright, its job rolls back by itself; stopped with SIGTERM, it rolls the job back and the
    open page receives the outcome before it exits. Either way nothing of the job is left anywhere."""
    prefix = f"wiz-{sig.name.lower()}"
    _hang_vm_machine_create(sim, prefix)
    wizard, url = _wizard(sim, where, "--stop-grace", "0.5")
    try:
        with httpx.Client(base_url=url, timeout=60) as http:
            job = _plan(http, _form(sim, creds, prefix))
            assert http.post(f"/jobs/{job}/deploy").status_code == 303
        page = Watcher(url, job)
        page.wait_for("creating agent VM machine")
        groups = _job_leaders(where["state"])
        assert len(groups) == 1
        if sig == signal.SIGTERM:
            with _phone() as (phone, shot):  # and the page as a phone shows it
                phone.goto(f"{url}/jobs/{job}")
                phone.locator("#steps").get_by_text("creating agent VM machine").wait_for()
                shot("deploying")
                wizard.send_signal(sig)
                page.join(GONE_WITHIN)
                assert page.end is not None, page.texts  # the page got the outcome, not a broken connection
                assert page.end["state"] == "failed" and 'id="rolled-back"' in page.end["page"]
                assert any("interrupted: stopping the deploy" in t for t in page.texts)
                assert wizard.wait(timeout=30) == 0
                # The wizard is gone; the phone shows the outcome it was sent, not "This site can't be reached".
                phone.locator("#rolled-back").wait_for()
                assert phone.url == f"{url}/jobs/{job}" and phone.locator("#result-failed").is_visible()
                shot("stopped-outcome-after-the-wizard-exited")
        else:
            wizard.send_signal(sig)
            assert wizard.wait(timeout=10) == -signal.SIGKILL
        _wait_all_gone(where["state"], groups)
    finally:
        if wizard.poll() is None:
            wizard.kill()
            wizard.wait()
    assert _healthy_pair_or_nothing(sim, prefix) == "nothing"
    _nothing_left_on_disk(where)
    output = "".join(wizard.said)  # type: ignore[attr-defined]
    assert "Traceback" not in output and not [v for v in where["values"].values() if v in output]


# -- the CLI ------------------------------------------------------------------------------------------------

def _cli(where: dict[str, Any], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "selfhosted", *args], env=where["env"], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)


def _read_until(process: subprocess.Popen[str], text: str) -> list[str]:
    lines = []
    assert process.stdout is not None
    for line in process.stdout:
        lines.append(line)
        if text in line:
            return lines
    raise AssertionError(f"no {text!r} in: {''.join(lines)}")


def test_the_cli_interrupted_again_and_again_cancels_once(sim: FlysimServer, where: dict[str, Any]) -> None:
    """SIGTERM, then two Ctrl-C while the rollback runs: the engine gets one interrupt (no Pulumi paragraph
    about pending operations), the deploy rolls back, nothing is left."""
    _hang_vm_machine_create(sim, "cli-int")
    cli = _cli(where, "setup", "--prefix", "cli-int", "--flysim-url", sim.url, "--yes")
    lines = _read_until(cli, "creating agent VM machine")
    groups = _job_leaders(where["state"])
    cli.send_signal(signal.SIGTERM)
    lines += _read_until(cli, "interrupted: stopping the deploy")
    cli.send_signal(signal.SIGINT)
    cli.send_signal(signal.SIGINT)
    lines += cli.stdout.readlines() if cli.stdout else []
    out = "".join(lines)
    assert cli.wait(timeout=GONE_WITHIN) == 1, out
    assert "pending operation" not in out.lower() and "aws console" not in out.lower(), out
    assert out.count("interrupted: stopping the deploy") == 1
    assert "stopping: the deploy is being stopped and rolled back" in out
    # The engine is waited for before the rollback starts: the rollback goes through Pulumi, not around a
    # stack still locked by the cancelled update.
    assert out.index("update canceled") < out.index("rolling back")
    assert "rollback through Pulumi failed" not in out
    assert "FAILED: interrupted before it finished" in out
    assert "Rolled back: nothing of 'cli-int' is left." in out
    _wait_all_gone(where["state"], groups)
    assert _healthy_pair_or_nothing(sim, "cli-int") == "nothing"
    _nothing_left_on_disk(where)


@pytest.mark.parametrize("killed", ["cli", "job", "cli-and-job"])
def test_the_cli_killed_mid_deploy(killed: str, sim: FlysimServer, where: dict[str, Any]) -> None:
    """SIGKILL of the CLI: its job rolls back by itself. SIGKILL of the job process: the CLI sweeps its
    engine processes at once and says what may be left. SIGKILL of both (everything killed): the engine's
    processes are left holding the secrets until the next start sweeps them and says what the dead job may
    have left at Fly; the teardown started then removes it."""
    import enginejob

    prefix = f"kill-{killed}"
    _hang_vm_machine_create(sim, prefix)
    cli = _cli(where, "setup", "--prefix", prefix, "--flysim-url", sim.url, "--yes")
    lines = _read_until(cli, "creating agent VM machine")
    [job] = _job_leaders(where["state"])
    engine = [pid for pid in _job_processes(where["state"]) if pid != job]
    assert engine  # the Pulumi CLI, its language host, the providers: all carry the marker
    if killed == "job":
        os.kill(job, signal.SIGKILL)
        out = "".join(lines) + (cli.stdout.read() if cli.stdout else "")
        assert cli.wait(timeout=60) == 1
        assert "FAILED: the deploy stopped: its process was killed before it finished" in out, out
        assert f"Still there: {prefix}-relay, {prefix}-vm. Remove them with" in out and "Rolled back" not in out
        assert _job_processes(where["state"]) == {}  # swept by the CLI before it answered
        _nothing_left_on_disk(where)
        down = subprocess.run([sys.executable, "-m", "selfhosted", "teardown", "--prefix", prefix, "--flysim-url",
                               sim.url, "--yes"], env=where["env"], cwd=REPO, capture_output=True, text=True,
                              timeout=GONE_WITHIN)
        assert down.returncode == 0 and "note:" not in down.stdout, down.stdout + down.stderr
        assert _healthy_pair_or_nothing(sim, prefix) == "nothing"
        return
    cli.kill()
    cli.wait(timeout=10)
    if killed == "cli":
        _wait_all_gone(where["state"], [job])
        assert enginejob.Runner(where["state"]).sweep() == []  # the next start finds nothing to sweep
        assert _healthy_pair_or_nothing(sim, prefix) == "nothing"
        _nothing_left_on_disk(where)
        return

    os.kill(job, signal.SIGKILL)
    # What a job killed outright leaves: processes holding the token, and its directory.
    assert set(_job_processes(where["state"])) & set(engine)
    assert list((where["state"] / "jobs").iterdir())
    # The next start (here the wizard, as a phone user would run it) sweeps them and says what the dead job
    # may have left, in its output and on the form page, where a user who never sees the terminal looks.
    said = (rf"a deploy of '{prefix}' started \S+ was cut short \(its process was killed\); it may have left "
            rf"{prefix}-relay, {prefix}-vm: check them and tear down what is left")
    wizard, url = _wizard(sim, where)
    try:
        assert re.search("note: " + said, "".join(wizard.said)), wizard.said  # type: ignore[attr-defined]
        page = httpx.get(url + "/", timeout=10).text
        notice = re.search(r'<div class="alert" role="status" id="swept">(.*?)</div>', page, re.S)
        assert notice and re.search(said, html.unescape(notice.group(1))), page
        assert 'href="/teardown"' in notice.group(1)
    finally:
        wizard.terminate()
        wizard.wait(timeout=GONE_WITHIN)
    down = subprocess.run([sys.executable, "-m", "selfhosted", "teardown", "--prefix", prefix, "--flysim-url",
                           sim.url, "--yes"], env=where["env"], cwd=REPO, capture_output=True, text=True,
                          timeout=GONE_WITHIN)
    assert down.returncode == 0, down.stdout + down.stderr
    assert "note:" not in down.stdout  # swept once, by the wizard
    assert f"nothing of '{prefix}' is left on flysim" in down.stdout
    _wait_all_gone(where["state"], [job])
    assert _healthy_pair_or_nothing(sim, prefix) == "nothing"
    _nothing_left_on_disk(where)


# -- many callers on one prefix -----------------------------------------------------------------------------

def test_two_clis_and_the_wizard_on_one_prefix_make_one_deploy(sim: FlysimServer, where: dict[str, Any],
                                                               creds: dict[str, str]) -> None:
    wizard, url = _wizard(sim, where)
    try:
        with httpx.Client(base_url=url, timeout=60) as http:
            job = _plan(http, _form(sim, creds, "trio"))
            clis = [_cli(where, "setup", "--prefix", "trio", "--flysim-url", sim.url, "--yes") for _ in range(2)]
            started = http.post(f"/jobs/{job}/deploy")
            outs = [p.communicate(timeout=GONE_WITHIN)[0] for p in clis]
            page = Watcher(url, job) if started.status_code == 303 else None
            if page is not None:
                page.join(GONE_WITHIN)
        wizard.send_signal(signal.SIGTERM)
        assert wizard.wait(timeout=60) == 0
    finally:
        if wizard.poll() is None:
            wizard.kill()
    done = [out for out in outs if "Done: the relay is up and healthy." in out]
    wizard_done = page is not None and page.end is not None and page.end["state"] == "succeeded"
    assert len(done) + wizard_done == 1, (outs, started.status_code, page and page.texts)
    # The others were told why, in words: running now (who), or made meanwhile (tear it down first).
    refusals = [out for out in outs if out not in done]
    if started.status_code != 303:
        refusals.append(started.text.replace("&#39;", "'"))
    elif not wizard_done:
        refusals.append(" ".join(page.texts))
    assert len(refusals) == 2
    for said in refusals:
        assert re.search(r"a deploy of 'trio' is already running \(since \d\d:\d\d:\d\d UTC, process \d+\)", said) \
            or "trio-relay and trio-vm already exist in 'personal': tear them down first" in said, said
    assert _healthy_pair_or_nothing(sim, "trio") == "healthy"
    assert len([m for a in _pair(sim, "trio").values() for m in a["machines"]]) == 2
    _nothing_left_on_disk(where)


class Terminal:
    """The CLI on a terminal (a pty as its stdin and stdout, as in a user's shell)."""

    def __init__(self, where: dict[str, Any], *args: str) -> None:
        self.master, terminal = os.openpty()
        self.process = subprocess.Popen([sys.executable, "-m", "selfhosted", *args], env=where["env"], cwd=REPO,
                                        stdin=terminal, stdout=terminal, stderr=terminal, start_new_session=True)
        os.close(terminal)
        self.transcript = ""

    def read_until(self, text: str, timeout: float = 120) -> None:
        import select

        deadline = time.monotonic() + timeout
        while text not in self.transcript:
            assert time.monotonic() < deadline and self.process.poll() is None, self.transcript
            if select.select([self.master], [], [], 0.2)[0]:
                self.transcript += os.read(self.master, 4096).decode(errors="replace")

    def type(self, line: str) -> None:
        os.write(self.master, line.encode() + b"\n")

    def finish(self, timeout: float = GONE_WITHIN) -> int:
        import select

        code = self.process.wait(timeout=timeout)
        while select.select([self.master], [], [], 0)[0]:
            try:
                chunk = os.read(self.master, 4096)
            except OSError:
                break
            if not chunk:
                break
            self.transcript += chunk.decode(errors="replace")
        os.close(self.master)
        return code


def test_a_stale_plan_never_takes_over_the_pair_deployed_since(sim: FlysimServer, where: dict[str, Any],
                                                               creds: dict[str, str]) -> None:
    """Tab C plans `twin3` and is left open; a terminal waits at "Deploy? [y/N]"; tab A plans and deploys
    `twin3`. Then tab C's Deploy and the terminal's "y": both refused with "already exists, tear it down
    first", with no mutating call, and the live pair (its volume still mounted) intact."""
    from selfhosted.target import flysim_target
    from selfhosted_helpers import WizardServer

    terminal = Terminal(where, "setup", "--prefix", "twin3", "--flysim-url", sim.url)
    terminal.read_until("Deploy? [y/N]")
    with WizardServer(flysim_target(sim.url), health_timeout=30) as wizard, \
            httpx.Client(base_url=wizard.url, timeout=60) as tab:
        stale = _plan(tab, _form(sim, creds, "twin3"))
        live = _plan(tab, _form(sim, creds, "twin3"))
        assert tab.post(f"/jobs/{live}/deploy").status_code == 303
        deployed = Watcher(wizard.url, live)
        deployed.join(GONE_WITHIN)
        assert deployed.end is not None and deployed.end["state"] == "succeeded", deployed.texts
        before = _pair(sim, "twin3")
        assert _healthy_pair_or_nothing(sim, "twin3") == "healthy"

        sim.clear_calls()
        assert tab.post(f"/jobs/{stale}/deploy").status_code == 303
        refused = Watcher(wizard.url, stale)
        refused.join(GONE_WITHIN)
        assert refused.end is not None and refused.end["state"] == "failed"
        assert "twin3-relay and twin3-vm already exist in &#39;personal&#39;: tear them down first" in \
            refused.end["page"]
        result = wizard.app.state.wizard.jobs.get(stale).result
        assert result.code == "already_exists" and result.left_behind == []  # nothing of theirs touched

        terminal.type("y")
        assert terminal.finish() == 1
        assert "twin3-relay and twin3-vm already exist in 'personal': tear them down first" in terminal.transcript
        assert "Done:" not in terminal.transcript

    assert [c for c in sim.calls() if c.get("mutating")] == []
    assert _healthy_pair_or_nothing(sim, "twin3") == "healthy"
    after = _pair(sim, "twin3")
    assert [v["id"] for v in after["twin3-vm"]["volumes"]] == [v["id"] for v in before["twin3-vm"]["volumes"]]
    assert after["twin3-vm"]["machines"] == before["twin3-vm"]["machines"]
    _nothing_left_on_disk(where)


def test_the_rehearsal_account_is_shared_by_processes_and_never_clobbered(tmp_path: Path,
                                                                          where: dict[str, Any]) -> None:
    """The wizard and a CLI each embed a flysim on one state file: one lock key for a prefix, and what one
    saves while the other is working survives the other's saves."""
    from selfhosted.component import MARKER
    from selfhosted.runner import prefix_key
    from selfhosted.target import EmbeddedFlysim

    state = tmp_path / "rehearsal.json"
    with EmbeddedFlysim(state_file=state) as ours:
        with EmbeddedFlysim(state_file=state) as another:
            assert ours.target.flaps_base_url != another.target.flaps_base_url
            assert prefix_key(ours.target, "rec") == prefix_key(another.target, "rec")
        with ours.server.client() as http:
            http.post("/v1/apps", json={"app_name": "rec-vm", "org_slug": "personal"}).raise_for_status()
            http.post("/v1/apps/rec-vm/machines", json={"name": "rec-vm-0", "region": "ams", "config": {
                "image": "registry.fly.io/artifact-agent-vm:latest", "metadata": {MARKER: "rec"}}}).raise_for_status()
            terminal = Terminal(where, "teardown", "--prefix", "rec", "--flysim-state", str(state))
            terminal.read_until("[y/N]")  # the CLI's flysim has read the account by now
            http.post("/v1/apps", json={"app_name": "other-relay", "org_slug": "personal"}).raise_for_status()
            terminal.type("y")
            assert terminal.finish() == 0, terminal.transcript
            assert "nothing of 'rec' is left on flysim" in terminal.transcript
            assert set(json.loads(state.read_text())["apps"]) == {"other-relay"}  # the CLI's save kept ours
            assert http.get("/v1/apps/rec-vm").status_code == 404  # and ours sees the CLI's removal
