"""Token buckets shaped like the Machines API's documented rate limits.

From Fly's "Working with the Machines API" page: limits apply per action and
per identifier (machine id, or app for app-level actions): 1 request/second
with a short-term burst of 3; Get Machine allows 5/s with burst 10; app
deletions are limited to 100 per minute.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass

DEFAULT_RATE, DEFAULT_BURST = 1.0, 3.0
# GraphQL is a different service at Fly, with its own (much higher) limits.
EXEMPT = {"GraphQL", "unknown"}
SPECIAL: dict[str, tuple[float, float]] = {
    "Machines_show": (5.0, 10.0),
    "Apps_delete": (100.0 / 60.0, 100.0),
}


@dataclass
class _Bucket:
    tokens: float
    stamp: float


class RateLimiter:
    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self._buckets: dict[tuple[str, str], _Bucket] = {}
        self._lock = threading.Lock()

    def check(self, operation: str, identifier: str) -> int | None:
        """Take a token; return None if allowed, else seconds for Retry-After."""
        if not self.enabled or operation in EXEMPT:
            return None
        rate, burst = SPECIAL.get(operation, (DEFAULT_RATE, DEFAULT_BURST))
        now = time.monotonic()
        key = (operation, identifier)
        with self._lock:
            b = self._buckets.get(key)
            if b is None:
                b = self._buckets[key] = _Bucket(tokens=burst, stamp=now)
            b.tokens = min(burst, b.tokens + (now - b.stamp) * rate)
            b.stamp = now
            if b.tokens >= 1.0:
                b.tokens -= 1.0
                return None
            return max(1, math.ceil((1.0 - b.tokens) / rate))

    def reset(self) -> None:
        with self._lock:
            self._buckets.clear()
