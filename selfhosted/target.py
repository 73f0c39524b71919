"""Where a deploy goes: Fly itself, or flysim (the default: a rehearsal that needs no Fly account).

The relay's public ``https://<prefix>-relay.fly.dev/health`` is probed on Fly directly; on flysim the
probe connects to the simulator with ``Host: <prefix>-relay.fly.dev``, which flysim answers as the
app's public service would.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fly.connection import DEFAULT_API_BASE_URL, DEFAULT_FLAPS_BASE_URL


@dataclass(frozen=True)
class Probe:
    """An HTTP GET as the relay's users make it: ``url`` to connect to, ``host`` to name."""

    url: str
    host: str | None = None


@dataclass(frozen=True)
class Target:
    name: str  # "fly" or "flysim"
    api_base_url: str
    flaps_base_url: str
    # Which account this is, for the one-job-per-prefix lock that every wizard and CLI on this machine
    # shares: the Machines API's URL, or for an embedded flysim its state file (each process's embedded
    # flysim listens on a port of its own, and all of them are one rehearsal account).
    account: str = ""

    @property
    def account_key(self) -> str:
        return self.account or self.flaps_base_url

    @property
    def rehearsal(self) -> bool:
        return self.name == "flysim"

    def public_url(self, app: str) -> str:
        return f"https://{app}.fly.dev"

    def health_probe(self, app: str) -> Probe:
        if self.rehearsal:
            return Probe(url=f"{self.flaps_base_url}/health", host=f"{app}.fly.dev")
        return Probe(url=f"{self.public_url(app)}/health")


def fly_target() -> Target:
    return Target("fly", DEFAULT_API_BASE_URL, DEFAULT_FLAPS_BASE_URL)


def flysim_target(url: str) -> Target:
    url = url.rstrip("/")
    return Target("flysim", url, url)


class EmbeddedFlysim:
    """A flysim on a free loopback port for the rehearsal, its state kept in ``state_file`` so a
    ``setup`` and a later ``teardown`` (two processes) see the same simulated account."""

    def __init__(self, state_file: Path | None = None, **options: Any) -> None:
        from flysim.testing import FlysimServer  # the simulator is a tool of this package, not of fly/

        if state_file is not None:
            state_file.parent.mkdir(parents=True, exist_ok=True)
        self.server = FlysimServer(state_file=str(state_file) if state_file else None, **options)

    def __enter__(self) -> EmbeddedFlysim:
        self.server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.stop()

    @property
    def target(self) -> Target:
        state_file = self.server.config.state_file
        target = flysim_target(self.server.url)
        if state_file:
            target = Target(target.name, target.api_base_url, target.flaps_base_url,
                            account=f"flysim-state:{Path(state_file).resolve()}")
        return target

    @property
    def token(self) -> str:
        """The rehearsal account's token (a simulator's, not a user credential)."""
        return self.server.token
