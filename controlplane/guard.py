"""Guardrails: writes off unless the operator turned them on, an allowlist (the slice's org and app
prefix) for every argument that names an app, and an audit log of every call (JSON lines)."""

from __future__ import annotations

import json
import re
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .errors import ControlPlaneError

# Fly app names: lowercase letters, digits and dashes, at most 63 characters.
APP_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
# Argument names whose values are secret (redacted in the audit log, whole or per key).
SECRET_ARGS = frozenset({"secrets", "token", "api_token", "password"})
REDACTED = "[redacted]"


class Guard:
    def __init__(self, *, org: str, prefix: str, allow_writes: bool) -> None:
        self.org, self.prefix, self.allow_writes = org, prefix, allow_writes

    def app(self, name: str) -> str:
        """Refuse an app name outside the allowlist: ``<prefix>-*`` (the org is checked against Fly's
        answer by the caller, since only Fly knows which org an app is in)."""
        if not isinstance(name, str) or not APP_NAME_RE.match(name) or not name.startswith(f"{self.prefix}-"):
            raise ControlPlaneError(
                f"app {name!r} is outside this control plane's allowlist (org {self.org}, apps {self.prefix}-*)",
                f"name an app of slice {self.prefix}: {self.prefix}-<role> or {self.prefix}-cust-<customer>")
        return name

    def org_of(self, name: str, org: str | None) -> None:
        if org is not None and org != self.org:
            raise ControlPlaneError(f"app {name} is in org {org}, outside this control plane's allowlist "
                                    f"(org {self.org})", f"name an app of org {self.org}")

    def write(self, tool: str) -> None:
        if not self.allow_writes:
            raise ControlPlaneError(f"{tool} would change the slice, and writes are not allowed on this server",
                                    "ask the operator to restart it with `python -m controlplane serve "
                                    "--allow-writes`, or call with dry_run=true")


def redact(args: Any, secrets: tuple[str, ...] = ()) -> Any:
    """A copy of ``args`` with secret arguments replaced, and any known secret value scrubbed."""
    if isinstance(args, dict):
        return {k: (({kk: REDACTED for kk in v} if isinstance(v, dict) else REDACTED) if k in SECRET_ARGS
                    else redact(v, secrets)) for k, v in args.items()}
    if isinstance(args, list):
        return [redact(v, secrets) for v in args]
    if isinstance(args, str):
        return scrub(args, secrets)
    return args


def scrub(text: str, secrets: tuple[str, ...]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    return text


class AuditLog:
    """One JSON object a line: time, tool, arguments (secrets redacted), outcome (ok, or the error)."""

    def __init__(self, path: Path | None, secrets: tuple[str, ...] = ()) -> None:
        self.path, self._secrets, self._lock = path, secrets, threading.Lock()

    def record(self, tool: str, args: dict[str, Any], outcome: str, detail: str = "") -> None:
        if self.path is None:
            return
        entry = {"time": datetime.now(timezone.utc).isoformat(timespec="milliseconds"), "tool": tool,
                 "args": redact(args, self._secrets), "outcome": outcome}
        if detail:
            entry["detail"] = scrub(detail, self._secrets)
        line = json.dumps(entry, sort_keys=True)
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as f:
                f.write(line + "\n")
