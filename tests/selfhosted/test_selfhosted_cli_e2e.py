"""The CLI end to end on the real engine: `setup` and `teardown` as a user runs them (a subprocess,
credentials from the environment), against a flysim of the test's and against the embedded one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from fly.pricing import PriceTable
from flysim.testing import FlysimServer

from selfhosted_helpers import scan, secret_values

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[2]


def _run(args: list[str], env: dict[str, str], tmp: Path, stdin: str = "") -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, **env, "TMPDIR": str(tmp), "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "selfhosted", *args], env=full_env, cwd=REPO, input=stdin,
                          capture_output=True, text=True, timeout=300)


def _cred_env(creds: dict[str, str]) -> dict[str, str]:
    return {"ANTHROPIC_API_KEY": creds["anthropic_api_key"], "TWILIO_ACCOUNT_SID": creds["twilio_account_sid"],
            "TWILIO_AUTH_TOKEN": creds["twilio_auth_token"], "TWILIO_WHATSAPP_NUMBER": creds["twilio_whatsapp_number"]}


def test_setup_then_teardown_on_flysim(flysim: FlysimServer, engine: Path, tmp_path: Path, creds: dict[str, str]) -> None:
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = {**_cred_env(creds), "FLY_API_TOKEN": flysim.token, "ARTIFACT_PULUMI_BIN": str(engine)}
    where = ["--flysim-url", flysim.url]

    setup = _run(["setup", "--prefix", "erin", "--region", "fra", *where, "--yes"], env, tmp)
    assert setup.returncode == 0, setup.stdout + setup.stderr
    out = setup.stdout
    assert "The plan (nothing is created yet):" in out
    assert "App erin-relay: new app" in out and "Agent VM volume: agentdata, 1 GB in fra" in out
    # The Fly bill in words, as on the wizard's plan page, from fly/pricing.json: in fra the relay's shared-cpu-1x
    # 256 MB $2.24 + the VM's shared-cpu-2x 1024 MB $7.37 + 1 GB x $0.15 = $9.76; the Flycast addresses unknown.
    assert PriceTable.load().prices["volume_gb_month"].usd == Decimal("0.15")
    assert ("Fly bill: About $9.76 a month on your Fly bill (the relay's machine (erin-relay-0), the agent VM's 1 GB "
            "volume and the agent VM's machine (erin-vm-0)), plus the two Flycast addresses") in out
    assert out.index("The plan") < out.index("creating relay app")  # the plan before anything is created
    assert "Relay URL:   https://erin-relay.fly.dev" in out
    assert "Webhook URL: https://erin-relay.fly.dev/webhooks/twilio" in out
    apps = {a["name"] for a in flysim.state()["apps"]}
    assert {"erin-relay", "erin-vm"} <= apps

    # A second setup of the same prefix (no state of the first): refused before anything is made.
    # (Its token pasted with a zero-width space: cleaned as the wizard cleans it, and said.)
    token = flysim.token
    pasted = {**env, "FLY_API_TOKEN": token[:6] + "\u200b" + token[6:] + "\r\n"}
    again = _run(["setup", "--prefix", "erin", *where, "--yes"], pasted, tmp)
    assert again.returncode == 1 and "already exist in 'personal': tear them down first" in again.stdout
    assert "The Fly API token held an invisible character (U+200B ZERO WIDTH SPACE)" in again.stdout

    # Teardown needs a confirmation: refused without a terminal, done with --yes.
    refused = _run(["teardown", "--prefix", "erin", *where], env, tmp)
    assert refused.returncode == 2 and "confirm with --yes" in refused.stderr
    assert {"erin-relay", "erin-vm"} <= {a["name"] for a in flysim.state()["apps"]}
    down = _run(["teardown", "--prefix", "erin", *where, "--yes"], pasted, tmp)
    assert down.returncode == 0, down.stdout + down.stderr
    assert down.stdout.index("removing erin-vm") < down.stdout.index("removing erin-relay")
    assert "nothing of 'erin' is left on flysim" in down.stdout
    assert not [a for a in flysim.state()["apps"] if a["name"].startswith("erin-")]

    values = secret_values(creds, flysim.token)
    printed = setup.stdout + setup.stderr + again.stdout + down.stdout + down.stderr
    assert not [name for name, value in values.items() if value in printed]
    assert scan(values, tmp) == []
    assert list(tmp.iterdir()) == []  # every job's temp directory removed


def test_rehearsal_on_the_embedded_flysim_needs_no_fly_account(engine: Path, tmp_path: Path,
                                                                creds: dict[str, str]) -> None:
    """The default: a flysim started for the run, its state in a file, so teardown (another process) finds it."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    state = tmp_path / "rehearsal.json"
    env = {**_cred_env(creds), "ARTIFACT_PULUMI_BIN": str(engine)}
    env.pop("FLY_API_TOKEN", None)
    setup = _run(["setup", "--prefix", "frank", "--flysim-state", str(state), "--yes"],
                 {**env, "FLY_API_TOKEN": ""}, tmp)
    assert setup.returncode == 0, setup.stdout + setup.stderr
    assert "rehearsal: an embedded flysim" in setup.stdout
    assert {"frank-relay", "frank-vm"} <= set(json.loads(state.read_text())["apps"])
    down = _run(["teardown", "--prefix", "frank", "--flysim-state", str(state), "--yes"], {**env, "FLY_API_TOKEN": ""}, tmp)
    assert down.returncode == 0, down.stdout + down.stderr
    assert not [a for a in json.loads(state.read_text())["apps"] if a.startswith("frank-")]
    assert scan(secret_values(creds, "unused-token-value"), tmp, state) == []


def test_bad_input_fails_before_any_call(flysim: FlysimServer, engine: Path, tmp_path: Path,
                                        creds: dict[str, str]) -> None:
    env = {**_cred_env(creds), "FLY_API_TOKEN": flysim.token}
    flysim.clear_calls()
    bad = _run(["setup", "--prefix", "Bad_Name", "--region", "mars", "--vm-size", "huge", "--flysim-url",
                flysim.url, "--yes"], env, tmp_path)
    assert bad.returncode == 2
    assert "--prefix: 'Bad_Name' can't prefix Fly app names" in bad.stderr
    assert "--region: 'mars' is not a Fly region" in bad.stderr and "--vm-size: 'huge'" in bad.stderr
    assert "Traceback" not in bad.stderr
    missing = _run(["setup", "--prefix", "gina", "--flysim-url", flysim.url, "--yes"],
                   {**env, "ANTHROPIC_API_KEY": ""}, tmp_path)
    assert missing.returncode == 2 and "Anthropic API key is missing: set ANTHROPIC_API_KEY" in missing.stderr
    assert flysim.calls() == []


def _converse(argv: list[str], env: dict[str, str], answers: list[tuple[str, str]], timeout: float = 60) -> tuple[str, int]:
    """Run the CLI on a terminal (a pty as its stdin and stdout, as in a user's shell), typing each answer
    after its prompt appears."""
    import select
    import time

    master, terminal = os.openpty()
    process = subprocess.Popen([sys.executable, "-m", "selfhosted", *argv], env=env, cwd=REPO, stdin=terminal,
                               stdout=terminal, stderr=terminal, start_new_session=True)
    os.close(terminal)
    transcript = b""
    deadline = time.monotonic() + timeout
    pending = list(answers)
    while time.monotonic() < deadline and process.poll() is None:
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                transcript += os.read(master, 4096)
            except OSError:
                break
        if pending and pending[0][0].encode() in transcript:
            os.write(master, pending.pop(0)[1].encode() + b"\n")
    code = process.wait(timeout=30)
    while select.select([master], [], [], 0)[0]:
        try:
            chunk = os.read(master, 4096)
        except OSError:
            break
        if not chunk:
            break
        transcript += chunk
    os.close(master)
    return transcript.decode(errors="replace"), code


def test_setup_prompts_without_echo_and_asks_before_deploying(flysim: FlysimServer, engine: Path, tmp_path: Path,
                                                              creds: dict[str, str]) -> None:
    env = {**os.environ, **_cred_env(creds), "FLY_API_TOKEN": flysim.token, "PYTHONPATH": str(REPO),
           "TMPDIR": str(tmp_path)}
    del env["ANTHROPIC_API_KEY"]
    transcript, code = _converse(["setup", "--prefix", "hank", "--flysim-url", flysim.url],
                                 env, [("Anthropic API key (input hidden): ", creds["anthropic_api_key"]),
                                       ("Deploy? [y/N]", "n")])
    assert "Anthropic API key (input hidden): " in transcript
    assert creds["anthropic_api_key"] not in transcript  # typed, not echoed
    assert "The plan (nothing is created yet):" in transcript
    assert "not deployed" in transcript and code == 1
    assert not [a for a in flysim.state()["apps"] if a["name"].startswith("hank-")]


def test_the_wizard_starts_with_one_command(engine: Path, tmp_path: Path) -> None:
    """`python -m selfhosted wizard`: a rehearsal flysim, the page, the token to paste; stops on SIGTERM."""
    import re
    import signal
    import socket

    import httpx

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": str(REPO), "TMPDIR": str(tmp_path)}
    process = subprocess.Popen([sys.executable, "-m", "selfhosted", "wizard", "--port", str(port), "--flysim-state",
                                str(tmp_path / "state.json")], env=env, cwd=REPO, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    try:
        assert process.stdout is not None
        lines = [process.stdout.readline() for _ in range(3)]
        assert f"wizard: http://127.0.0.1:{port}/ (deploying to flysim)" in lines[1]
        token = re.search(r"use this Fly token in the form \(a simulator's token\): (\S+)", lines[2]).group(1)
        page = httpx.get(f"http://127.0.0.1:{port}/", timeout=10)
        assert page.status_code == 200 and 'id="fly_token"' in page.text and 'id="rehearsal"' in page.text
        plan = httpx.post(f"http://127.0.0.1:{port}/plan", timeout=30, data={
            "fly_token": token, "prefix": "kim", "anthropic_api_key": "sk-ant-" + "k" * 30,
            "twilio_account_sid": "AC" + "0" * 32, "twilio_auth_token": "t" * 32,
            "twilio_whatsapp_number": "+14155238886"})
        assert plan.status_code == 200 and "Token ok: organization" in plan.text
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0
