"""Fly.io: a typed client for the Machines REST API (and GraphQL where REST has nothing), and Pulumi
dynamic providers built on it. Knows Fly, nothing of Artifact."""

from .client import FlyClient, RetryPolicy
from .connection import FlyConnection
from .errors import (
    FlyAPIError,
    FlyAuthError,
    FlyConfigError,
    FlyConflict,
    FlyConnectionError,
    FlyError,
    FlyForbidden,
    FlyGraphQLError,
    FlyInvalidResponse,
    FlyNameTaken,
    FlyNotFound,
    FlyPreconditionFailed,
    FlyRateLimited,
    FlyServerError,
    FlyWaitTimeout,
)

__all__ = [
    "FlyAPIError", "FlyAuthError", "FlyClient", "FlyConfigError", "FlyConflict", "FlyConnection",
    "FlyConnectionError", "FlyError", "FlyForbidden", "FlyGraphQLError", "FlyInvalidResponse", "FlyNameTaken",
    "FlyNotFound", "FlyPreconditionFailed", "FlyRateLimited", "FlyServerError", "FlyWaitTimeout", "RetryPolicy",
]
