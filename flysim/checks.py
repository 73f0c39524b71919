"""Machine checks: `config.checks` (spec `fly.MachineCheck`) reported as `checks` (spec `CheckStatus`).

flysim runs no containers, so a check is decided, in this order, by:

1. a status forced for one machine's check through the admin API (`POST /__flysim/checks`);
2. a `check_failure` fault matching the app (and machine, and check name, if it names them);
3. the machine's state: a machine that is not `started` has every check `critical`
   (flyd only checks running machines);
4. the image catalogue's `health` for the machine's image (`flysim/catalogue.json`);
5. otherwise `passing`.

Checks are evaluated when they are read, so a fault or a state change shows at once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .errors import bad_request
from .state import App, Machine, rfc3339

if TYPE_CHECKING:  # pragma: no cover
    from .sim import Sim

CHECK_TYPES = ("http", "tcp")
STATUSES = ("passing", "warning", "critical")
_STRING_FIELDS = ("path", "method", "protocol", "interval", "timeout", "grace_period", "tls_server_name", "kind")


def validate(checks: Any) -> None:
    """Reject what flyd cannot run: `checks` is `{name: fly.MachineCheck}`."""
    if checks is None:
        return
    if not isinstance(checks, dict):
        raise bad_request("invalid config.checks: must be an object keyed by check name")
    for name, check in checks.items():
        where = f"config.checks.{name}"
        if not isinstance(check, dict):
            raise bad_request(f"invalid {where}: must be an object")
        kind = check.get("type")
        if kind is not None and kind not in CHECK_TYPES:
            raise bad_request(f"invalid {where}.type {kind!r}: must be http or tcp")
        port = check.get("port")
        if isinstance(port, float):
            # What flyd's Go decoder says of `8080.0` for an int field: JSON numbers are not coerced.
            raise bad_request(f"json: cannot unmarshal number {port!r} into Go struct field "
                              f"MachineCheck.{where}.port of type int")
        if port is not None and (isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536):
            raise bad_request(f"invalid {where}.port {port!r}: must be an integer from 1 to 65535")
        for key in _STRING_FIELDS:
            if key in check and not isinstance(check[key], str):
                raise bad_request(f"invalid {where}.{key}: must be a string")


def statuses(sim: Sim, app: App, m: Machine) -> list[dict[str, str]]:
    """The machine's `CheckStatus` list, sorted by check name (empty when it has no checks)."""
    declared = m.config.get("checks") or {}
    if not isinstance(declared, dict) or not declared:
        return []
    health = sim.images.resolve(str(m.config.get("image") or "")).health
    changed = rfc3339(m.updated_at)
    out = []
    for name in sorted(declared):
        forced = m.checks.get(name)
        if forced and forced.get("forced"):
            status, output, at = forced["status"], forced.get("output", ""), forced.get("updated_at", changed)
        else:
            fault = sim.faults.check_failure(app.name, m.id, name)
            at = changed
            if fault is not None:
                status, output = "critical", fault.message or "injected fault: check failing"
            elif m.state != "started":
                status, output = "critical", f"machine is {m.state}"
            elif health is not None:
                status, output = health.status, health.output
            else:
                status, output = "passing", "Success"
        out.append({"name": name, "status": status, "output": output, "updated_at": at})
    return out


def passing(sim: Sim, app: App, m: Machine) -> tuple[bool, str]:
    """Whether every check of a started machine passes, and if not, the first failure."""
    for c in statuses(sim, app, m):
        if c["status"] != "passing":
            return False, f"{c['name']}: {c['status']}: {c['output']}"
    return True, ""
