"""What a caller of the control plane sees when something fails: what failed, and the fix.

Messages are built from the request line and Fly's answer (``fly.errors`` never includes headers or
bodies), never from the token.
"""

from __future__ import annotations

from fly import (
    FlyAuthError,
    FlyConfigError,
    FlyConnectionError,
    FlyError,
    FlyForbidden,
    FlyNameTaken,
    FlyNotFound,
    FlyRateLimited,
)


class ControlPlaneError(Exception):
    """A failure a person can act on: ``what`` went wrong and the ``fix``."""

    def __init__(self, what: str, fix: str) -> None:
        self.what, self.fix = what, fix
        super().__init__(f"{what}. Fix: {fix}")


def token_rejected(org: str) -> ControlPlaneError:
    return ControlPlaneError(
        f"Fly rejected the org token (FLY_ORG_TOKEN) for org {org}: it is invalid, expired or revoked, or not "
        f"a token of org {org}",
        f"create a new org token (`fly tokens create org -o {org}`), set FLY_ORG_TOKEN to it and restart "
        "the control plane")


def from_fly(exc: FlyError, doing: str, *, org: str) -> ControlPlaneError:
    """Translate a Fly client error raised while ``doing`` something into a ControlPlaneError."""
    if isinstance(exc, FlyAuthError):
        return token_rejected(org)
    if isinstance(exc, FlyForbidden):
        return ControlPlaneError(f"{doing}: the org token's scope does not cover it ({exc})",
                                 f"use a token of org {org} (`fly tokens create org -o {org}`)")
    if isinstance(exc, FlyNameTaken):
        return ControlPlaneError(f"{doing}: the name is taken on Fly ({exc})",
                                 "app names are global on Fly: choose another customer name")
    if isinstance(exc, FlyNotFound):
        return ControlPlaneError(f"{doing}: not found ({exc})",
                                 "check the name; list what exists with infra_list_machines or infra_manifest")
    if isinstance(exc, FlyRateLimited):
        return ControlPlaneError(f"{doing}: Fly's rate limit was hit and retries ran out ({exc})",
                                 "wait a minute and call again")
    if isinstance(exc, FlyConnectionError):
        return ControlPlaneError(f"{doing}: {exc}",
                                 "check the network and the manifest's fly.api_base_url / flaps_base_url")
    if isinstance(exc, FlyConfigError):
        return ControlPlaneError(f"{doing}: {exc}", "set FLY_ORG_TOKEN to the slice's org token")
    return ControlPlaneError(f"{doing}: {exc}", "read the message from Fly above, correct the input and retry")
