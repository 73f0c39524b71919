"""``LocalCommand``: run a local command as a step of the graph (like pulumi-command's
``local.Command``, whose provider plugin cannot be installed offline here; see docs/engine.md).

A non-zero exit fails the resource, and so the update. Environment values may be Pulumi secrets:
they are stored encrypted, passed to the process, and never echoed.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pulumi
from pulumi.dynamic import CreateResult, DiffResult, ResourceProvider, UpdateResult

REPO = Path(__file__).resolve().parent.parent


class CommandFailed(Exception):
    pass


class LocalCommandProvider(ResourceProvider):
    def _run(self, props: dict[str, Any]) -> dict[str, Any]:
        env = {**os.environ, **{k: str(v) for k, v in (props.get("environment") or {}).items()}}
        result = subprocess.run(props["create"], cwd=props.get("dir") or str(REPO), env=env, capture_output=True,
                                text=True, timeout=int(props.get("timeout") or 600), check=False)
        secrets = [str(v) for v in (props.get("environment") or {}).values() if len(str(v)) >= 8]
        stdout, stderr = _redact(result.stdout, secrets), _redact(result.stderr, secrets)
        if result.returncode != 0:
            raise CommandFailed(f"`{' '.join(props['create'])}` exited {result.returncode}:\n"
                                f"{(stdout + stderr).strip()[-3000:]}")
        return {**props, "stdout": stdout[-10000:], "stderr": stderr[-10000:]}

    def create(self, props: dict[str, Any]) -> CreateResult:
        return CreateResult(" ".join(props["create"])[:100], self._run(props))

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        keys = ("create", "environment", "triggers", "dir")
        changed = [k for k in keys if olds.get(k) != news.get(k)]
        # "unknown" on a change: the engine then names the changed keys (see fly/providers/base.py)
        return DiffResult(changes=None if changed else False, replaces=[], stables=[k for k in keys if k not in changed])

    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        return UpdateResult(self._run(news))

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        return None


def _redact(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, "[secret]")
    return text


class LocalCommand(pulumi.dynamic.Resource, module="artifact", name="LocalCommand"):
    stdout: pulumi.Output[str]
    stderr: pulumi.Output[str]

    def __init__(self, resource_name: str, *, create: list[str], environment: dict[str, pulumi.Input[str]] | None = None,
                 triggers: list[pulumi.Input[Any]] | None = None, timeout: int = 600,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        props = {"create": create, "environment": pulumi.Output.secret(environment or {}), "triggers": triggers or [],
                 "dir": None, "timeout": timeout, "stdout": None, "stderr": None}
        # Typed as pulumi-python:dynamic/artifact:LocalCommand; stacks made before that know it untyped.
        secret = pulumi.ResourceOptions(additional_secret_outputs=["environment"],
                                        aliases=[pulumi.Alias(type_="pulumi-python:dynamic:Resource")])
        super().__init__(LocalCommandProvider(), resource_name, props,
                         pulumi.ResourceOptions.merge(opts, secret) if opts else secret)
