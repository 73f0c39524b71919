"""Drive the real Pulumi engine through the Automation API, on a local file backend, against flysim
(the stack setup is the project's own, `ops.workspace`)."""

from __future__ import annotations

import uuid
from pathlib import Path

from ops.workspace import REPO, SliceStack, local_slice_stack

__all__ = ["REPO", "SliceStack", "make_stack"]


def make_stack(tmp_path: Path, pulumi_bin: Path, flysim_url: str, token: str, *, stack_name: str | None = None,
               config: dict[str, str] | None = None, secret_config: dict[str, str] | None = None) -> SliceStack:
    return local_slice_stack(tmp_path, pulumi_bin, flysim_url, token, stack_name or f"e2e-{uuid.uuid4().hex[:8]}",
                             config=config, secret_config=secret_config, passphrase="e2e-passphrase")
