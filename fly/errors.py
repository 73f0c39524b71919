"""One exception hierarchy for everything the Fly APIs can answer.

Every error carries the HTTP status, Fly's own ``error`` text and ``status`` code (e.g. ``name_taken``),
the method and path of the call, and the resource it was about, so a person can act on the message.
No token or secret value is ever part of an error: messages are built from the request line and
Fly's answer only, never from headers or request bodies.
"""

from __future__ import annotations

from typing import Any


class FlyError(Exception):
    """Base class of every error raised by the ``fly`` package."""


class FlyConfigError(FlyError):
    """The client was configured wrongly (missing token, malformed base URL)."""


class FlyConnectionError(FlyError):
    """The API could not be reached (connection refused, reset, DNS, read timeout)."""

    def __init__(self, method: str, path: str, reason: str) -> None:
        self.method, self.path, self.reason = method, path, reason
        super().__init__(f"{method} {path}: could not reach the Fly API ({reason})")


class FlyInvalidResponse(FlyError):
    """The API answered with something that does not match Fly's documented shape."""

    def __init__(self, method: str, path: str, problem: str) -> None:
        self.method, self.path, self.problem = method, path, problem
        super().__init__(f"{method} {path}: unexpected answer from the Fly API: {problem}")


class FlyAPIError(FlyError):
    """The API answered with an HTTP error status."""

    hint = ""

    def __init__(
        self,
        *,
        status_code: int,
        method: str,
        path: str,
        error: str | None = None,
        fly_status: str | None = None,
        resource: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.status_code = status_code
        self.method = method
        self.path = path
        self.error = error
        self.fly_status = fly_status
        self.resource = resource
        self.retry_after = retry_after
        super().__init__(self._message())

    def _message(self) -> str:
        parts = [f"{self.method} {self.path} failed with HTTP {self.status_code}"]
        if self.resource:
            parts.append(f"({self.resource})")
        text = " ".join(parts)
        if self.error:
            text += f": {self.error}"
        if self.fly_status and self.fly_status != "unknown":
            text += f" [status {self.fly_status}]"
        if self.hint:
            text += f". {self.hint}"
        return text


class FlyAuthError(FlyAPIError):
    hint = "The API token was rejected or has expired: check FLY_API_TOKEN (or the stack's fly:apiToken)"


class FlyForbidden(FlyAPIError):
    hint = "The token is valid but its scope does not cover this resource: use a token for the right org or app"


class FlyNotFound(FlyAPIError):
    hint = "It does not exist (or the token cannot see it)"


class FlyNameTaken(FlyAPIError):
    hint = "Names are global on Fly: pick another name or prefix"


class FlyConflict(FlyAPIError):
    hint = "Someone else changed it or holds its lease: read it again and retry"


class FlyPreconditionFailed(FlyAPIError):
    hint = "The resource is not in a state that allows this (e.g. a started machine needs force to be deleted)"


class FlyRateLimited(FlyAPIError):
    hint = "Fly's rate limit was hit: slow down"


class FlyWaitTimeout(FlyAPIError):
    hint = "The machine did not reach the state in time"


class FlyServerError(FlyAPIError):
    hint = "Fly had an internal problem: retry later"


class FlyBadRequest(FlyAPIError):
    pass


class FlyGraphQLError(FlyError):
    """A GraphQL call returned ``errors``."""

    def __init__(self, operation: str, messages: list[str], codes: list[str] | None = None) -> None:
        self.operation, self.messages, self.codes = operation, messages, codes or []
        super().__init__(f"GraphQL {operation} failed: " + "; ".join(messages))


def error_for_status(status_code: int, body: Any, *, method: str, path: str, resource: str | None,
                     retry_after: float | None) -> FlyAPIError:
    error = fly_status = None
    if isinstance(body, dict):
        raw_error = body.get("error") or body.get("message")
        error = str(raw_error) if raw_error is not None else None
        raw_status = body.get("status")
        fly_status = str(raw_status) if isinstance(raw_status, str) else None
    elif isinstance(body, str) and body.strip():
        error = body.strip()[:300]
    cls: type[FlyAPIError]
    if status_code == 401:
        cls = FlyAuthError
    elif status_code == 403:
        cls = FlyForbidden
    elif status_code == 404:
        cls = FlyNotFound
    elif status_code == 408:
        cls = FlyWaitTimeout
    elif status_code == 409:
        cls = FlyConflict
    elif status_code == 412:
        cls = FlyPreconditionFailed
    elif status_code == 422 and (fly_status == "name_taken" or (error and "taken" in error)):
        cls = FlyNameTaken
    elif status_code == 429:
        cls = FlyRateLimited
    elif status_code >= 500:
        cls = FlyServerError
    else:
        cls = FlyBadRequest
    return cls(status_code=status_code, method=method, path=path, error=error, fly_status=fly_status,
               resource=resource, retry_after=retry_after)
