"""Token buckets keyed as the Machines API keys its rate limits.

Source: superfly/docs `machines/api/working-with-machines-api.html.markerb`,
"Rate Limits" (docs commit ea04cf4c, superfly/docs#1966, and 249242b4,
superfly/docs#2197):

  "Machines API rate limits apply per-action, per-machine and are scoped per
  identifier. That might be Machine ID or App ID, depending on the type of
  request. The limit is 1 request, per second, per action (i.e. Create
  Machine, Start Machine etc.) - with a short-term burst limit up to 3 req/s,
  per action. This applies to all actions except Get Machine which is 5 req/s,
  with a short-term burst limit up to 10 req/s. Additionally, app deletions are
  limited to 100 per minute."

So a bucket is (action, identifier), and the identifier is the most specific
object the request names (`identifier()` below). No Fly source keys a Machines
API limit by token or by org, so flysim does not either: several slices in one
org, with one token or many, each get their own buckets. fly-go's flaps client
tags every request with its action and machine id (`contextWithAction`,
`contextWithMachineID`) and does not throttle on the client side.

Where the docs leave the identifier open, flysim reads it this way:
- App create names no existing app; its identifier is the app it creates (the
  body's `app_name`, or `name` as fly-go's `CreateAppRequest` sends it).
- App list and the org-wide lists name an org: the org slug.
- App deletions, "100 per minute": not per app (an app is deleted once), so a
  second bucket per org, 100/min with a burst of 100, on top of the per-app one.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass

DEFAULT_RATE, DEFAULT_BURST = 1.0, 3.0
# GraphQL and the logs API are a different service at Fly (api.fly.io), with
# their own limits; the public hostname stand-in is Fly's proxy, not the Machines API.
EXEMPT = {"GraphQL", "Logs_get", "unknown", "PublicHTTP"}
SPECIAL: dict[str, tuple[float, float]] = {
    "Machines_show": (5.0, 10.0),
}
APP_DELETIONS_PER_ORG = (100.0 / 60.0, 100.0)


@dataclass
class _Bucket:
    tokens: float
    stamp: float


def identifier(operation: str, path_params: Mapping[str, str], query: Mapping[str, str], body: bytes) -> str:
    """The object a request's limit is scoped to (see the module docstring)."""
    for key in ("machine_id", "app_name", "org_slug"):
        if path_params.get(key):
            return f"{key}:{path_params[key]}"
    if operation == "Apps_create":
        try:
            doc = json.loads(body or b"{}")
        except ValueError:
            doc = None
        name = (doc.get("app_name") or doc.get("name")) if isinstance(doc, dict) else None
        return f"app_name:{name}" if isinstance(name, str) and name else "app_name:"
    if query.get("org_slug"):
        return f"org_slug:{query['org_slug']}"
    return "-"


class RateLimiter:
    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self._buckets: dict[tuple[str, str], _Bucket] = {}
        self._lock = threading.Lock()

    def check(self, operation: str, ident: str, *, org_slug: str | None = None) -> int | None:
        """Take a token from each bucket the request falls in; None if allowed, else Retry-After seconds."""
        if not self.enabled or operation in EXEMPT:
            return None
        buckets = [((operation, ident), SPECIAL.get(operation, (DEFAULT_RATE, DEFAULT_BURST)))]
        if operation == "Apps_delete" and org_slug:
            buckets.append((("Apps_delete/org", org_slug), APP_DELETIONS_PER_ORG))
        now = time.monotonic()
        with self._lock:
            waits = []
            filled = []
            for key, (rate, burst) in buckets:
                b = self._buckets.get(key)
                if b is None:
                    b = self._buckets[key] = _Bucket(tokens=burst, stamp=now)
                b.tokens = min(burst, b.tokens + (now - b.stamp) * rate)
                b.stamp = now
                filled.append(b)
                if b.tokens < 1.0:
                    waits.append(max(1, math.ceil((1.0 - b.tokens) / rate)))
            if waits:
                return max(waits)
            for b in filled:
                b.tokens -= 1.0
            return None

    def reset(self) -> None:
        with self._lock:
            self._buckets.clear()
