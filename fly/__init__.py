"""Fly.io: a typed client for the Machines REST API (and GraphQL where REST has nothing), and Pulumi
dynamic providers built on it. Knows Fly, nothing of Artifact.

Exports are lazy (PEP 562): see ``fly.providers`` for why a package must not import its submodules
when dynamic providers are unpickled on several threads.
"""

from importlib import import_module
from typing import Any

_EXPORTS = {
    "FlyClient": "client", "RetryPolicy": "client", "FlyConnection": "connection",
    **{name: "errors" for name in (
        "FlyAPIError", "FlyAlreadyExists", "FlyAuthError", "FlyBadRequest", "FlyConfigError", "FlyConflict", "FlyConnectionError",
        "FlyError", "FlyForbidden", "FlyGraphQLError", "FlyHealthGateFailed", "FlyInvalidResponse",
        "FlyMachineCrashed", "FlyMachineDidNotStart", "FlyManifestInvalid", "FlyNameTaken", "FlyNotFound", "FlyOperationFailed",
        "FlyPreconditionFailed", "FlyRateLimited", "FlyReleaseCommandFailed", "FlyServerError", "FlyWaitTimeout")},
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
