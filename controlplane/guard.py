"""Guardrails: writes off unless the operator turned them on, a structural allowlist of the apps a call
may name, and an audit log of every call (JSON lines), written before the call acts.

The allowlist is structural, not a string prefix: an app is either one of the slice's own apps, by its
exact name from the manifest, or a customer app ``<prefix>-cust-<customer>``. A customer name that would
make the name of another slice's app (slice ``<prefix>-cust``'s ``nfs``, slice ``<prefix>-cust-x``'s
``fly-router``...) is refused, and a customer app is only destroyed when its machines carry the
customer marker (machine metadata ``artifact_customer``) the control plane sets on them."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .errors import ControlPlaneError

# Fly app names: lowercase letters, digits and dashes, at most 63 characters (checked as a full match:
# ``$`` would let a trailing newline through).
APP_NAME_RE = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
APP_NAME_MAX = 63
CUSTOMER_RE = re.compile(r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?")
# The machine metadata key that marks a machine as a customer's (set by the control plane's ensure).
CUSTOMER_MARKER = "artifact_customer"
# Argument names whose values are secret (redacted in the audit log, whole or per key).
SECRET_ARGS = frozenset({"secrets", "token", "api_token", "password"})
REDACTED = "[redacted]"
# What a tool refused for want of write permission can do instead.
READ_ONLY_ALTERNATIVE = {
    "infra_ensure_app": "or call with dry_run=true to see the plan",
    "infra_provision_org": "or call with apply=false to preview",
}


class Guard:
    def __init__(self, *, org: str, prefix: str, allow_writes: bool, slice_apps: Iterable[str] = ()) -> None:
        self.org, self.prefix, self.allow_writes = org, prefix, allow_writes
        self.slice_apps = frozenset(slice_apps)

    @property
    def customer_prefix(self) -> str:
        return f"{self.prefix}-cust-"

    def _outside(self, name: str, why: str) -> ControlPlaneError:
        own = ", ".join(sorted(self.slice_apps)) or f"{self.prefix}-<role>"
        return ControlPlaneError(
            f"app {name} is outside this control plane's allowlist ({why}; org {self.org}, apps {self.prefix}-*: "
            f"the slice's own ({own}) and customer apps {self.customer_prefix}<customer>)",
            f"name an app of slice {self.prefix}: one of its own apps, or {self.customer_prefix}<customer>")

    def app(self, name: str) -> str:
        """Refuse an app name outside the allowlist (the org is checked against Fly's answer by the
        caller, since only Fly knows which org an app is in)."""
        if not isinstance(name, str):
            raise self._outside(str(name), "not a name")
        if name in self.slice_apps:
            return name
        if name.startswith(self.customer_prefix):
            self.customer(name.removeprefix(self.customer_prefix))
            return name
        if not APP_NAME_RE.fullmatch(name):  # not echoed: it may hold anything, a newline included
            raise self._outside("(the name given)", "not a Fly app name of at most 63 lowercase letters, digits "
                                                    "and dashes")
        raise self._outside(name, "neither one of the slice's apps nor a customer app")

    def customer(self, customer: str) -> str:
        """A customer id whose app ``<prefix>-cust-<customer>`` is this slice's and no other's."""
        limit = APP_NAME_MAX - len(self.customer_prefix)
        if not isinstance(customer, str) or not CUSTOMER_RE.fullmatch(customer):
            raise ControlPlaneError("invalid input: customer: must be lowercase letters, digits and dashes, "
                                    "starting and ending with a letter or digit (e.g. 'acme-1')",
                                    "correct the customer id and call again")
        if len(customer) > limit:
            raise ControlPlaneError(f"invalid input: customer: {len(customer)} characters is too long: the app "
                                    f"name {self.customer_prefix}<customer> allows {limit}",
                                    f"use a customer id of at most {limit} characters")
        for role in self.roles():
            if customer == role or customer.endswith(f"-{role}"):
                other = f"{self.prefix}-cust" + (f"-{customer.removesuffix(role).rstrip('-')}" if customer != role else "")
                raise ControlPlaneError(
                    f"customer {customer!r} is refused: {self.customer_prefix}{customer} is the name of app "
                    f"{role!r} of a slice named {other}, not a customer app of slice {self.prefix}",
                    f"choose a customer id that does not end in a slice role ({', '.join(self.roles())})")
        return customer

    def roles(self) -> list[str]:
        """The slice's app names without its prefix (``nfs``, ``fly-router``...): the names another slice
        uses for its apps too."""
        return sorted(n.removeprefix(f"{self.prefix}-") for n in self.slice_apps if n.startswith(f"{self.prefix}-"))

    def customer_marker(self, name: str, customer: str, machines: Iterable[Any]) -> None:
        """Refuse to act on an app as customer ``customer``'s when one of its machines does not carry that
        customer's marker: it was not made by this control plane for that customer. ``machines``: Fly's
        machines, or the listing ``Infra.list_machines`` returns."""
        for machine in machines:
            if isinstance(machine, dict):
                machine_id, marker = machine.get("id"), machine.get("customer")
            else:
                machine_id = machine.id
                marker = ((getattr(machine, "config", None) or {}).get("metadata") or {}).get(CUSTOMER_MARKER)
            if marker != customer:
                raise ControlPlaneError(
                    f"app {name} is not customer {customer}'s app of slice {self.prefix}: its machine {machine_id} "
                    f"does not carry the customer marker ({CUSTOMER_MARKER}={customer}); nothing was changed",
                    "check the name; an app this control plane did not make for the customer is not its to use")

    def org_of(self, name: str, org: str | None) -> None:
        if org is not None and org != self.org:
            raise ControlPlaneError(f"app {name} is in org {org}, outside this control plane's allowlist "
                                    f"(org {self.org})", f"name an app of org {self.org}")

    def write(self, tool: str) -> None:
        if not self.allow_writes:
            alternative = READ_ONLY_ALTERNATIVE.get(tool)
            raise ControlPlaneError(f"{tool} would change the slice, and writes are not allowed on this server",
                                    "ask the operator to restart it with `python -m controlplane serve "
                                    f"--allow-writes`{', ' + alternative if alternative else ''}")


def redact(args: Any, secrets: tuple[str, ...] = ()) -> Any:
    """A copy of ``args`` with secret arguments replaced, any value shaped like a credential (the slice
    config's own test: a Clerk secret key, a Fly token, a JWT, a private key) replaced, and any known
    secret value scrubbed. The audit line is written before the call's input is checked, so a credential
    passed where it does not belong (in ``env``, say) must not reach the log either."""
    from components.config import looks_secret  # here: `controlplane validate` imports no Pulumi

    def walk(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: (({kk: REDACTED for kk in v} if isinstance(v, dict) else REDACTED) if k in SECRET_ARGS
                        else walk(v)) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v) for v in value]
        if isinstance(value, str):
            return REDACTED if looks_secret(value) else scrub(value, secrets)
        return value
    return walk(args)


def scrub(text: str, secrets: tuple[str, ...]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    return text


class AuditLogUnwritable(ControlPlaneError):
    pass


class AuditLog:
    """One JSON object a line: time, the call's id, tool, caller (token id, client, session, peer),
    arguments (secrets redacted), outcome: ``started`` before the call acts, then ``ok`` or ``error``."""

    def __init__(self, path: Path | None, secrets: tuple[str, ...] = ()) -> None:
        self.path, self._secrets, self._lock = path, secrets, threading.Lock()

    def check(self) -> None:
        """At start: the log can be appended to (its directory made if missing), or the server does not start."""
        if self.path is None:
            return
        try:
            with self._lock:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                with self.path.open("a", encoding="utf-8"):
                    pass
        except OSError as exc:
            raise self._unwritable(exc) from None

    def _unwritable(self, exc: OSError) -> AuditLogUnwritable:
        return AuditLogUnwritable(f"the audit log {self.path} cannot be written ({exc.strerror or type(exc).__name__})",
                                  "pass --audit-log (or set CONTROLPLANE_AUDIT_LOG to) a file this user can append "
                                  "to, in a directory that exists or can be made")

    def record(self, tool: str, args: dict[str, Any], outcome: str, detail: str = "", *,
               call: str | None = None, caller: dict[str, Any] | None = None) -> None:
        """Append one line; raises ``AuditLogUnwritable`` when it cannot."""
        if self.path is None:
            return
        entry: dict[str, Any] = {"time": datetime.now(timezone.utc).isoformat(timespec="milliseconds"), "tool": tool,
                                 "args": redact(args, self._secrets), "outcome": outcome}
        if call:
            entry["call"] = call
        if caller is not None:
            entry["caller"] = redact(caller, self._secrets)
        if detail:
            entry["detail"] = scrub(detail, self._secrets)
        line = json.dumps(entry, sort_keys=True)
        try:
            with self._lock:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                with self.path.open("a", encoding="utf-8") as f:
                    f.write(line + "\n")
        except OSError as exc:
            raise self._unwritable(exc) from None
