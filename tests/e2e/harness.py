"""Drive the real Pulumi engine through the Automation API, on a local file backend, against flysim."""

from __future__ import annotations

import os
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pulumi import automation as auto

REPO = Path(__file__).resolve().parents[2]
# What a project directory needs; the stack files of ephemeral test stacks go to the temporary copy,
# never into the checkout.
PROJECT_FILES = ["Pulumi.yaml", "__main__.py", "components", "controlplane", "deploy", "fly", "ops", "requirements.txt"]
# The program runs in the virtualenv the tests run in (Pulumi.yaml names `.venv`), so the suite exercises the
# Python it was started with (scripts/test runs it on 3.11 and 3.13).
VENV = Path(sys.prefix)


@dataclass
class SliceStack:
    stack: auto.Stack
    work_dir: Path
    events: list[str] = field(default_factory=list)

    def up(self) -> auto.UpResult:
        return self.stack.up(on_output=self.events.append, color="never")

    def preview(self) -> auto.PreviewResult:
        return self.stack.preview(on_output=self.events.append, color="never", diff=True)

    def refresh(self) -> auto.RefreshResult:
        return self.stack.refresh(on_output=self.events.append, color="never")

    def destroy(self) -> auto.DestroyResult:
        return self.stack.destroy(on_output=self.events.append, color="never")

    def outputs(self) -> dict[str, Any]:
        return {k: v.value for k, v in self.stack.outputs().items()}

    def remove(self) -> None:
        self.stack.workspace.remove_stack(self.stack.name)


def make_stack(tmp_path: Path, pulumi_bin: Path, flysim_url: str, token: str, *, stack_name: str | None = None,
               config: dict[str, str] | None = None, secret_config: dict[str, str] | None = None) -> SliceStack:
    work_dir = tmp_path / "project"
    work_dir.mkdir(parents=True)
    for name in PROJECT_FILES:
        (work_dir / name).symlink_to(REPO / name)
    (work_dir / ".venv").symlink_to(VENV)
    backend = tmp_path / "backend"
    backend.mkdir()
    env = {
        "PATH": f"{pulumi_bin}:{VENV / 'bin'}:{os.environ.get('PATH', '')}",
        "PULUMI_BACKEND_URL": f"file://{backend}",
        "PULUMI_CONFIG_PASSPHRASE": "e2e-passphrase",
        "PULUMI_SKIP_UPDATE_CHECK": "true",
        "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
        "PULUMI_HOME": str(tmp_path / "pulumi-home"),
        "FLY_API_TOKEN": token,
    }
    name = stack_name or f"e2e-{uuid.uuid4().hex[:8]}"
    stack = auto.create_or_select_stack(
        stack_name=name, work_dir=str(work_dir),
        opts=auto.LocalWorkspaceOptions(work_dir=str(work_dir), env_vars=env, pulumi_home=str(tmp_path / "pulumi-home")),
    )
    base = {"artifact-slice:org": "personal", "artifact-slice:primaryRegion": "syd",
            "artifact-slice:nfsVolumeSizeGb": "1", "artifact-slice:protectVolumes": "false",
            "artifact-slice:domain": f"{name}.artifact.test",
            "fly:apiBaseUrl": flysim_url, "fly:flapsBaseUrl": flysim_url}
    base.update(config or {})
    values = {k: auto.ConfigValue(value=v) for k, v in base.items()}
    values.update({k: auto.ConfigValue(value=v, secret=True) for k, v in (secret_config or {}).items()})
    stack.set_all_config(values)
    return SliceStack(stack=stack, work_dir=work_dir)
