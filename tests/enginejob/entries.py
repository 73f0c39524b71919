"""Entry functions the enginejob tests run in job processes (importable through ``pythonpath``)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from enginejob import JobContext


def echo(ctx: JobContext, payload: dict[str, Any]) -> dict[str, Any]:
    for i in range(payload["n"]):
        ctx.emit({"i": i})
    return {"sum": sum(range(payload["n"])), "secret_seen": payload.get("secret", "")[:2],
            "dir_private": oct(ctx.dir.stat().st_mode & 0o777)}


def fail(_ctx: JobContext, _payload: Any) -> None:
    raise ValueError("the app name is taken: choose another prefix")


def spawn_and_wait(ctx: JobContext, payload: dict[str, Any]) -> str:
    """Leaves a marked process behind (as a plugin the engine started would be), then waits for a cancel
    and records how it came (the rollback a deploy does)."""
    subprocess.Popen(["sleep", "300"], env={**ctx.env, "PATH": "/usr/bin:/bin"}, start_new_session=True)
    ctx.note(apps=["x-relay", "x-vm"])
    ctx.emit({"ready": True})
    ctx.cancelled.wait(60)
    Path(payload["flag"]).write_text(f"cancelled parent_gone={ctx.parent_gone.is_set()}")
    return "rolled back"


def engine_then_rollback(ctx: JobContext, payload: dict[str, Any]) -> dict[str, Any]:
    """A fake engine command (a program named pulumi-*) interrupted by a cancel, then one that runs to its
    end after it (the rollback)."""
    fake = payload["fake_pulumi"]
    ctx.emit({"ready": True})
    first, _err, cancelled = ctx.engine(lambda: subprocess.run([fake, "30"]).returncode)
    second, _err2, cancelled2 = ctx.engine(lambda: subprocess.run([fake, "0.2"]).returncode)
    return {"first": first, "cancelled": cancelled, "second": second, "second_cancelled": cancelled2}


def pulumi_up(ctx: JobContext, payload: dict[str, Any]) -> dict[str, Any]:
    """`pulumi up` of the stack in ``payload["project"]`` through the Automation API, as the control plane's
    apply runs it (``stack=`` given: an interrupted engine's leftover lock is released)."""
    from pulumi import automation as auto

    stack = auto.select_stack(stack_name="s", work_dir=payload["project"],
                              opts=auto.LocalWorkspaceOptions(work_dir=payload["project"], env_vars=dict(ctx.env)))
    _value, error, cancelled = ctx.engine(lambda: stack.up(color="never"), stack=stack)
    return {"cancelled": cancelled, "error": type(error).__name__ if error else None}
