"""The engine as users start it: the pinned CLI and SDK, and the project's virtualenv found however
`pulumi` is started (by hand after `source scripts/setup.sh`, from another directory with `--cwd`, without
the virtualenv on PATH, from the Automation API; the last is every other e2e test)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib.metadata import version as installed_version
from pathlib import Path

from .harness import REPO, make_stack

PINNED = next(line.split("==")[1].strip() for line in (REPO / "requirements.txt").read_text().splitlines()
              if line.startswith("pulumi=="))


def test_cli_and_sdk_are_the_pinned_release(pulumi_bin: Path) -> None:
    version = subprocess.run([str(pulumi_bin / "pulumi"), "version"], capture_output=True, text=True, check=True)
    assert version.stdout.strip() == f"v{PINNED}"
    assert installed_version("pulumi") == PINNED


def _run(argv: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{' '.join(argv)} failed:\n{done.stdout}\n{done.stderr}"
    return done


def test_cli_from_another_directory_without_the_virtualenv_on_path(tmp_path: Path, pulumi_bin: Path,
                                                                     flysim) -> None:
    s = make_stack(tmp_path, pulumi_bin, flysim.url, flysim.token, config={"artifact-slice:validateInUp": "false"})
    env = dict(s.stack.workspace.env_vars)
    # Only the engine and the system: no virtualenv, no pyenv shims. The system's python3 (if any) has no
    # Pulumi SDK, so a language host that ran it would fail with "No module named 'pulumi'".
    env["PATH"] = f"{pulumi_bin}:/usr/bin:/bin"
    env.pop("VIRTUAL_ENV", None)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    pulumi_cli = str(pulumi_bin / "pulumi")
    cwd_args = ["--cwd", str(s.work_dir), "--stack", s.stack.name, "--non-interactive"]

    up = _run([pulumi_cli, "up", "--yes", "--skip-preview", *cwd_args], env, elsewhere)
    assert "No module named" not in up.stdout + up.stderr
    apps = {a["name"] for a in flysim.state()["apps"]}
    assert {f"{s.stack.name}-nfs", f"{s.stack.name}-fly-router", f"{s.stack.name}-fly-exec"} <= apps

    preview = _run([pulumi_cli, "preview", "--json", *cwd_args], env, elsewhere)
    steps = json.loads(preview.stdout).get("changeSummary", {})
    assert set(steps) <= {"same"}, f"a no-change preview planned changes: {steps}"

    _run([pulumi_cli, "destroy", "--yes", "--skip-preview", *cwd_args], env, elsewhere)
    assert not [a for a in flysim.state()["apps"] if a["name"].startswith(s.stack.name + "-")]


def test_setup_sourced_by_hand_leaves_the_shell_as_it_was(tmp_path: Path) -> None:
    """`source scripts/setup.sh` in an interactive-like shell: the engine and the virtualenv land on PATH,
    and no shell option changes (an `errexit` left behind would close the user's terminal on a typo)."""
    script = (f"set +e +u; before=$-; source {REPO}/scripts/setup.sh; after=$-; false; "
              "echo \"options:$before:$after\"; command -v pulumi; command -v python")
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV",)}
    env["ARTIFACT_VENV"] = sys.prefix  # the virtualenv the tests run in: already set up
    env["ARTIFACT_PYTHON"] = sys.executable
    done = subprocess.run(["bash", "-c", script], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    options, pulumi_path, python_path = done.stdout.strip().splitlines()[-3:]
    _, before, after = options.split(":")
    assert before == after
    assert Path(pulumi_path).parent.name == "bin" and "artifact-slices" in pulumi_path
    assert Path(python_path).parent == Path(sys.prefix) / "bin"
