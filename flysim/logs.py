"""Application logs, served the way `fly logs --no-tail` reads them.

The endpoint is on the API host, not the Machines API: `GET /api/v1/apps/<app>/logs` with the query
parameters `next_token` (always sent, empty at first), `instance` (a machine id) and `region`, and the
caller's token in `Authorization` (fly-go `resource_logs.go`, `GetAppLogs`). The answer is one JSON
document, `{"data": [{"id", "attributes": {timestamp, message, level, instance, region, meta}}],
"meta": {"next_token"}}`, decoded by fly-go into `LogEntry` (`types.go`) and rendered by flyctl as
`<meta.event.provider>[<instance>] <region> [<level>] <message>` (`internal/render/logs.go`, which parses
`timestamp` as RFC 3339 with nanoseconds). flyctl's poller (`logs/polling.go`) keeps the last non-empty
`next_token` and asks again with it; `--no-tail` stops after the first page that holds entries.

What flysim's pages hold (Fly documents none of this; these are flysim's choices): an answer without a
token is the newest `PAGE` lines that match the filters, and its `next_token` is a cursor after them;
an answer with a token is the next `PAGE` matching lines after that cursor (none: the same cursor back).
Lines live in memory only, `KEEP` an app, and go with the app.

The lines are what the simulated machines do: the platform's own lines (`runner`: a machine started,
stopped, suspended, out of restarts; `app`: flyd's init starting and the main process exiting), the
image's boot output (the catalogue's `boot`: the NFS image runs its self-mount check and logs `self-mount
ok`, or the mount error), a release command's output, and a crashing process's output.
"""

from __future__ import annotations

import base64
import threading
import time
from collections import deque
from datetime import UTC, datetime
from typing import Any

from starlette.responses import JSONResponse, Response

from . import ids
from .errors import bad_request
from .state import App, Machine

PAGE = 100
KEEP = 1000


def _timestamp(ns: int) -> str:
    """RFC 3339 with nanoseconds, as flyctl parses it (time.RFC3339Nano)."""
    seconds, frac = divmod(ns, 1_000_000_000)
    return datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{frac:09d}Z"


def _token(seq: int) -> str:
    return base64.urlsafe_b64encode(f"flysim-logs:{seq}".encode()).decode().rstrip("=")


def _cursor(token: str) -> int:
    try:
        text = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        prefix, _, seq = text.partition(":")
        if prefix != "flysim-logs" or not seq.isdigit():
            raise ValueError(text)
        return int(seq)
    except ValueError:
        raise bad_request("invalid next_token: pass back the meta.next_token of an earlier answer, "
                          "or leave it empty") from None


class LogBook:
    """Every app's recent log lines, newest last."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lines: dict[str, deque[dict[str, Any]]] = {}
        self._seq = 0

    def emit(self, app: App, m: Machine, provider: str, text: str, *, level: str = "info") -> None:
        """One entry per non-empty line of `text`, from machine `m`; `provider` is `app` for what the
        machine's processes print, `runner` for the platform's lines about the machine."""
        lines = [line for line in text.splitlines() if line.strip()]
        if not lines:
            return
        with self._lock:
            book = self._lines.setdefault(app.id, deque(maxlen=KEEP))
            for line in lines:
                self._seq += 1
                book.append({
                    "seq": self._seq,
                    "id": ids.ulid(),
                    "attributes": {
                        "timestamp": _timestamp(time.time_ns()),
                        "message": line,
                        "level": level,
                        "instance": m.id,
                        "region": m.region,
                        "meta": {"instance": m.id, "region": m.region, "event": {"provider": provider}},
                    },
                })

    def clear(self) -> None:
        with self._lock:
            self._lines.clear()

    def forget(self, app: App) -> None:
        with self._lock:
            self._lines.pop(app.id, None)

    def page(self, app: App, *, token: str, instance: str, region: str) -> tuple[list[dict[str, Any]], str]:
        after = _cursor(token) if token else None
        with self._lock:
            lines = [e for e in self._lines.get(app.id, ())
                     if (not instance or e["attributes"]["instance"] == instance)
                     and (not region or e["attributes"]["region"] == region)]
            end = self._seq
        if after is None:
            chosen = lines[-PAGE:]
            cursor = chosen[-1]["seq"] if chosen else end
        else:
            chosen = [e for e in lines if e["seq"] > after][:PAGE]
            cursor = chosen[-1]["seq"] if chosen else after
        return [{"id": e["id"], "attributes": e["attributes"]} for e in chosen], _token(cursor)

    def messages(self, app: App) -> list[str]:
        """Every kept line of an app (for tests and the admin view)."""
        with self._lock:
            return [e["attributes"]["message"] for e in self._lines.get(app.id, ())]


async def app_logs(ctx: Any) -> Response:
    app = ctx.app()
    query = ctx.query
    data, token = ctx.sim.logs.page(app, token=query.get("next_token", ""), instance=query.get("instance", ""),
                                    region=query.get("region", ""))
    return JSONResponse({"data": data, "meta": {"next_token": token}})


ROUTES = [("GET", "/api/v1/apps/{app_name}/logs", "Logs_get", app_logs)]
