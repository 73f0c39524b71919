"""The one exception handlers raise to answer with an error.

Fly's error body is `{"error": "...", "status": "<main.statusCode>"?}` (schema
`ErrorResponse`); `status` is only set for classified failures such as
`name_taken` or `insufficient_capacity`.
"""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    def __init__(
        self,
        http_status: int,
        message: str,
        *,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.http_status = http_status
        self.message = message
        self.code = code
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"error": self.message}
        if self.code:
            out["status"] = self.code
        return out


def not_found(what: str) -> ApiError:
    return ApiError(404, f"{what} not found")


def bad_request(message: str) -> ApiError:
    return ApiError(400, message)


def precondition(message: str) -> ApiError:
    # flyd prefixes refused state changes with the gRPC-ish code name.
    return ApiError(412, f"failed_precondition: {message}")
