"""The "Running a real slice" steps of docs/real-slice.md (where the README sends a reader to run a real
slice), run as written with the `pulumi` CLI, in a temporary copy of the project on a file backend,
against flysim standing in for Fly (issue 9's acceptance).

The test fills in only what the page leaves to its reader (the backend, the passphrase, the Fly
token) and points the Fly endpoint at flysim the way flyctl reads it (FLY_API_BASE_URL,
FLY_FLAPS_BASE_URL); `source scripts/setup.sh` has been done by whoever runs the tests (its own
test is tests/e2e/test_engine.py). The stack is the page's own, `org1`, from the checkout's
Pulumi.org1.yaml."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from flysim.testing import FlysimServer
from ops.workspace import REPO, VENV, link_project

from .userpaths import doc_block, view

pytestmark = pytest.mark.e2e

PAGE, SECTION = "docs/real-slice.md", "Running a real slice"
PASSPHRASE = "readme-passphrase"


def _fill_in(command: str, backend: Path, token: str) -> str:
    """What the reader fills in; anything else left as a placeholder fails the test."""
    command = command.replace("<your backend>", f"file://{backend}")
    command = re.sub(r"^export PULUMI_CONFIG_PASSPHRASE=\.\.\.$", f"export PULUMI_CONFIG_PASSPHRASE={PASSPHRASE}",
                     command)
    command = re.sub(r"^export FLY_API_TOKEN=\.\.\.$", f"export FLY_API_TOKEN={token}", command)
    assert "..." not in command and not re.search(r"<[a-z ]+>", command), \
        f"the step {command!r} of {PAGE} has a placeholder this test doesn't know"
    return command


def test_real_slice_steps_work_as_written(pulumi_bin: Path, tmp_path: Path) -> None:
    commands = doc_block(PAGE, SECTION)
    assert commands[0] == "source scripts/setup.sh", commands
    steps = commands[1:]
    for expected in ("pulumi stack init org1", "pulumi preview", "pulumi up"):
        assert expected in steps, f"the steps of {PAGE} don't include `{expected}`: {steps}"

    project = link_project(tmp_path / "project")  # the checkout's files as links, without its stack files
    shutil.copy(REPO / "Pulumi.org1.yaml", project / "Pulumi.org1.yaml")  # `stack init` writes to it
    checkout_stack_file = (REPO / "Pulumi.org1.yaml").read_text()
    backend = tmp_path / "backend"
    backend.mkdir()

    with FlysimServer(orgs=["org1"]) as flysim:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PULUMI_", "FLY_"))}
        env.update({
            "PATH": f"{pulumi_bin}:{VENV / 'bin'}:{os.environ.get('PATH', '')}",  # what setup.sh put there
            "PULUMI_HOME": str(tmp_path / "pulumi-home"),  # the user's ~/.pulumi, kept out of the real one
            "PULUMI_SKIP_UPDATE_CHECK": "true",
            "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
            "PULUMI_SKIP_CONFIRMATIONS": "true",  # the user's "yes" at `pulumi up`'s prompt
            "FLY_API_BASE_URL": flysim.url,
            "FLY_FLAPS_BASE_URL": flysim.url,
        })
        exports: list[str] = []
        outputs: dict[str, str] = {}
        for step in steps:
            command = _fill_in(step, backend, flysim.token)
            if command.startswith("export "):
                exports.append(command)
                continue
            flysim.clear_calls()
            proc = subprocess.run(["bash", "-euo", "pipefail", "-c", "\n".join([*exports, command])], cwd=project,
                                  env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=600,
                                  start_new_session=True)
            output = proc.stdout + proc.stderr
            if proc.returncode != 0:
                pytest.fail(f"{PAGE} step `{step}` failed:\n{output[-5000:]}")
            outputs[step] = output
            if step == "pulumi preview":
                assert flysim.calls() == [], f"`pulumi preview` of the new stack called the Fly API: {flysim.calls()}"
                assert re.search(r"\+ \d+ to create", output), output[-3000:]
                assert "error" not in output.lower(), output[-3000:]

        assert re.search(r"\+ \d+ created", outputs["pulumi up"]), outputs["pulumi up"][-3000:]
        sim = view(flysim, "org1")
        assert set(sim.apps) == {f"org1-{r}" for r in ("nfs", "fly-router", "fly-exec", "worker-pool",
                                                        "fly-host-basic", "fly-host-coder")}
        for role in ("nfs", "fly-router", "fly-exec"):
            assert [(m["state"], m["region"]) for m in sim.machines(role)] == [("started", "syd")], role
        assert [(v["name"], v["size_gb"]) for v in sim.volumes()] == [("nfsdata", 10)]
        assert len(sim.live_tokens()) == 1
    assert "encryptionsalt:" in (project / "Pulumi.org1.yaml").read_text()
    assert (REPO / "Pulumi.org1.yaml").read_text() == checkout_stack_file
