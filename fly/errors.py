"""One exception hierarchy for everything the Fly APIs can answer.

Every error carries the HTTP status, Fly's own ``error`` text and ``status`` code (e.g. ``name_taken``),
the method and path of the call, and the resource it was about, so a person can act on the message.
No token or secret value is ever part of an error: messages are built from the request line and
Fly's answer only, never from headers or request bodies.
"""

from __future__ import annotations

import re
from typing import Any, Callable


class FlyError(Exception):
    """Base class of every error raised by the ``fly`` package."""


class FlyConfigError(FlyError):
    """The client was configured wrongly (missing token, malformed base URL)."""


# What a lost connection most likely means, and what to try, by httpx's exception name.
_CONNECTION_ADVICE = {
    "ConnectError": "nothing answered at that address: check FLY_API_BASE_URL / FLY_FLAPS_BASE_URL "
                    "(or fly:apiBaseUrl / fly:flapsBaseUrl) and your network",
    "RemoteProtocolError": "the connection was closed before a complete answer",
    "ReadError": "the connection broke while reading the answer",
    "WriteError": "the connection broke while sending the request",
}


class FlyConnectionError(FlyError):
    """The API could not be reached (connection refused, reset, DNS, read timeout)."""

    def __init__(self, method: str, path: str, reason: str) -> None:
        self.method, self.path, self.reason = method, path, reason
        name = reason.split(":")[-1].strip()
        what = _CONNECTION_ADVICE.get(name, "the network or the Fly API failed")
        super().__init__(
            f"{method} {path}: could not reach the Fly API ({reason}: {what}). Check your network and "
            "https://status.flyio.net, then run `pulumi up` again: what a lost answer created is adopted, "
            "not duplicated")


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


class FlyAlreadyExists(FlyConflict):
    """409 ``already_exists``: a machine of that name is in the app; the message names its id."""

    hint = "A machine of that name already exists in the app"

    @property
    def existing_id(self) -> str | None:
        match = re.search(r"machine ID (\S+) already exists", self.error or "")
        return match.group(1) if match else None


class FlyPreconditionFailed(FlyAPIError):
    hint = "The resource is not in a state that allows this (e.g. a started machine needs force to be deleted)"


class FlyRateLimited(FlyAPIError):
    hint = "Fly's rate limit was hit: slow down"

    def budget_spent(self, limit: str, waited: float, budget: float) -> FlyRateLimited:
        """The same error, saying which limit kept refusing and for how long."""
        spent = type(self)(status_code=self.status_code, method=self.method, path=self.path, error=self.error,
                           fly_status=self.fly_status, resource=self.resource, retry_after=self.retry_after)
        spent.limit = limit
        spent.args = (f"{self._message()}. Fly's {limit} rate limit still refused after {waited:.0f}s of "
                      f"retries (budget {budget:.0f}s): run fewer slices at once, or raise the budget with "
                      "FLY_RATE_LIMIT_BUDGET_SECONDS",)
        return spent


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


# The error class for an answer, by status; a status with several meanings has a rule that reads the
# body. First match wins; anything else 4xx is a FlyBadRequest, anything 5xx a FlyServerError.
_ErrorRule = Callable[[str | None, str | None], bool]
_ERROR_TABLE: list[tuple[int, _ErrorRule, type[FlyAPIError]]] = [
    (401, lambda _e, _s: True, FlyAuthError),
    (403, lambda _e, _s: True, FlyForbidden),
    (404, lambda _e, _s: True, FlyNotFound),
    (408, lambda _e, _s: True, FlyWaitTimeout),
    (409, lambda e, s: s == "already_exists" or (e or "").startswith("already_exists"), FlyAlreadyExists),
    (409, lambda _e, _s: True, FlyConflict),
    (412, lambda _e, _s: True, FlyPreconditionFailed),
    (422, lambda e, s: s == "name_taken" or "taken" in (e or ""), FlyNameTaken),
    (429, lambda _e, _s: True, FlyRateLimited),
]


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
    cls = next((c for status, rule, c in _ERROR_TABLE if status == status_code and rule(error, fly_status)),
               FlyServerError if status_code >= 500 else FlyBadRequest)
    return cls(status_code=status_code, method=method, path=path, error=error, fly_status=fly_status,
               resource=resource, retry_after=retry_after)


# -- what the slice reports: typed, so callers and tests match on the type, not on message text --------

class FlyOperationFailed(FlyError):
    """Fly did what was asked and the result is a failure (a check, a release, a file, a boot)."""


def where_logs_are(app: str, machine_id: str) -> str:
    """Where a machine's recent log lines are: flyctl's command, and the logs API it reads
    (``FlyClient.app_logs(app, instance=...)``)."""
    return (f"its recent log lines: `fly logs --no-tail -a {app} --machine {machine_id}` "
            f"(the logs API: GET /api/v1/apps/{app}/logs?instance={machine_id})")


class FlyHealthGateFailed(FlyOperationFailed):
    def __init__(self, app: str, machine_id: str, gate: str, command: list[str], exit_code: int | None,
                 output: str, why: str) -> None:
        self.app, self.machine_id, self.gate, self.exit_code = app, machine_id, gate, exit_code
        super().__init__(f"health gate {gate!r} failed on machine {machine_id} of app {app}: `{' '.join(command)}` "
                         f"{why}" + (f"; last output: {output}" if output else "")
                         + f". See {where_logs_are(app, machine_id)}")


class FlyReleaseCommandFailed(FlyOperationFailed):
    def __init__(self, app: str, machine_id: str, exit_code: int | None, why: str) -> None:
        self.app, self.machine_id, self.exit_code = app, machine_id, exit_code
        super().__init__(f"release command of app {app} {why} (machine {machine_id}); "
                         f"its output is in {where_logs_are(app, machine_id)}")


class FlyManifestInvalid(FlyOperationFailed):
    def __init__(self, where: str, problem: str) -> None:
        self.where, self.problem = where, problem
        super().__init__(f"{where} {problem}")


class FlyMachineCrashed(FlyOperationFailed):
    def __init__(self, app: str, machine_id: str, exit_code: int | None, state: str) -> None:
        self.app, self.machine_id, self.exit_code, self.state = app, machine_id, exit_code, state
        super().__init__(f"machine {machine_id} of app {app} crashed on boot: its main process exited with "
                         f"code {exit_code} and the machine is {state}. See {where_logs_are(app, machine_id)} "
                         f"and `fly machine status {machine_id} -a {app}`; fix the image or its config, then "
                         "run `pulumi up` again")


class FlyMachineDidNotStart(FlyOperationFailed):
    def __init__(self, app: str, machine_id: str, seconds: float) -> None:
        self.app, self.machine_id = app, machine_id
        super().__init__(f"machine {machine_id} of app {app} did not start within {seconds:.0f}s. See "
                         f"{where_logs_are(app, machine_id)} and `fly machine status {machine_id} -a {app}`; "
                         "then run `pulumi up` again")
