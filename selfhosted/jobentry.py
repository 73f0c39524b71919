"""The self-hosted jobs as they run in an enginejob job process (``selfhosted.runner.start_deploy`` and
``start_teardown`` start them): the payload (with the credentials) came through the job's pipe; every
step goes back to the wizard or CLI as an event; the result is JSON.

A cancel (the parent's, or the parent's death) makes the deploy stop the engine and roll back; a
teardown runs to its end (stopping halfway would leave half a pair).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import asdict
from typing import Any

from enginejob import JobContext

from .progress import Step
from .runner import run_teardown, setup
from .settings import Credentials, DeploySettings
from .target import Target


def _private_tmp(ctx: JobContext) -> None:
    """This process's temp files (the Automation API's event logs) in the job's directory, so nothing of
    the job is left in the machine's /tmp when it ends, or when a sweep removes what a killed job left."""
    tmp = ctx.dir / "tmp"
    tmp.mkdir(mode=0o700, exist_ok=True)
    os.environ["TMPDIR"] = str(tmp)
    tempfile.tempdir = str(tmp)


def _emit(ctx: JobContext) -> Any:
    def progress(step: Step) -> None:
        ctx.emit(step.as_dict())
    return progress


def deploy(ctx: JobContext, payload: dict[str, Any]) -> dict[str, Any]:
    _private_tmp(ctx)
    target = Target(**payload["target"])
    settings = DeploySettings.model_validate(payload["settings"])
    credentials = Credentials.model_validate(payload["credentials"])
    result = setup(target, settings, credentials, _emit(ctx), backend_url=payload.get("backend_url"),
                   passphrase=payload.get("passphrase"), health_timeout=int(payload.get("health_timeout", 120)),
                   ctx=ctx)
    return asdict(result)


def teardown(ctx: JobContext, payload: dict[str, Any]) -> dict[str, Any]:
    _private_tmp(ctx)
    target = Target(**payload["target"])
    settings = DeploySettings.model_validate(payload["settings"])
    ctx.note(apps=[settings.vm_app, settings.relay_app], target=target.name)
    return {"left_behind": run_teardown(target, settings, str(payload["token"]), _emit(ctx))}
