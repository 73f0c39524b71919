"""The runtime requirements install from binary wheels on every supported Python, so a dependency can't
silently drop a Python version again (pulumi 3.79 pinned grpcio 1.56.2, which has no wheel for 3.12+).

pip resolves ``requirements.txt`` for another interpreter and platform (``--dry-run``: it reads the
wheels' metadata from the package index and installs nothing), refusing source distributions.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SUPPORTED = ["3.11", "3.12", "3.13"]
# The platforms users run `pulumi` on: Linux (CI runners, servers) and macOS on Apple silicon.
PLATFORMS = {
    "linux-x86_64": ["manylinux2014_x86_64", "manylinux_2_17_x86_64", "manylinux_2_28_x86_64"],
    "macos-arm64": ["macosx_11_0_arm64", "macosx_14_0_arm64"],
}


def _resolve(python: str, platforms: list[str], tmp_path: Path) -> dict[str, str]:
    report = tmp_path / "report.json"
    args = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--dry-run",
            "--ignore-installed", "--only-binary=:all:", "--implementation", "cp", "--python-version", python,
            "--target", str(tmp_path / "target"), "--report", str(report), "-r", str(REPO / "requirements.txt")]
    for platform in platforms:
        args += ["--platform", platform]
    done = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"requirements.txt does not install from wheels on Python {python}:\n{done.stderr}"
    return {item["metadata"]["name"].lower(): item["metadata"]["version"]
            for item in json.loads(report.read_text())["install"]}


@pytest.mark.parametrize("platform", sorted(PLATFORMS))
@pytest.mark.parametrize("python", SUPPORTED)
def test_runtime_requirements_install_from_wheels(python: str, platform: str, tmp_path: Path) -> None:
    installed = _resolve(python, PLATFORMS[platform], tmp_path)
    pinned = next(line.split("==")[1].strip() for line in (REPO / "requirements.txt").read_text().splitlines()
                  if line.startswith("pulumi=="))
    assert installed["pulumi"] == pinned
    assert "grpcio" in installed  # the binary dependency that broke before
