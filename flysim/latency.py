"""Latency profiles: how long each simulated transition takes, in seconds.

`zero`      everything is immediate; transitions complete before the response
            is sent (deterministic, for tests).
`fast`      tens of milliseconds, so clients see the intermediate states
            (`starting`, `stopping`, ...) without slowing test suites much.
`realistic` figures taken from Fly's own documentation and blog posts; see
            docs/flysim.md ("Latency profiles") for each figure's source.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LatencyProfile:
    name: str
    request: float  # added to every API request (network + API hop)
    create: float  # created -> starting (image pull/unpack, placement)
    start: float  # starting -> started (VM boot)
    stop: float  # stopping -> stopped
    suspend: float  # suspending -> suspended (memory snapshot)
    resume: float  # starting from suspended -> started
    destroy: float  # destroying -> destroyed
    replace: float  # update of a running machine: replacing -> (re)start
    volume_create: float  # volume provisioning (response is synchronous)

    @property
    def immediate(self) -> bool:
        return self.name == "zero"


PROFILES: dict[str, LatencyProfile] = {
    "zero": LatencyProfile("zero", 0, 0, 0, 0, 0, 0, 0, 0, 0),
    "fast": LatencyProfile(
        "fast", request=0.0, create=0.02, start=0.03, stop=0.02, suspend=0.02,
        resume=0.01, destroy=0.02, replace=0.02, volume_create=0.0,
    ),
    # Sources (see docs/flysim.md): Fly Machines "boot instances in about 300ms"
    # (fly.io/blog/fly-machines); create includes image pull, "a few seconds"
    # for a small image; stop waits for the process after SIGINT (kill_timeout
    # default 5 s, typical apps exit in ~1 s); API round trip 20-50 ms
    # in-region (same blog post).
    "realistic": LatencyProfile(
        "realistic", request=0.04, create=2.0, start=0.3, stop=1.0, suspend=0.5,
        resume=0.2, destroy=0.5, replace=1.0, volume_create=0.5,
    ),
}


def get_profile(name: str) -> LatencyProfile:
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown latency profile {name!r}; choose from {sorted(PROFILES)}") from None
