"""Where the Fly APIs are and which token to use, resolved the way flyctl resolves them."""

from __future__ import annotations

import os

from pydantic import BaseModel, ConfigDict, SecretStr, field_validator

from .errors import FlyConfigError

DEFAULT_API_BASE_URL = "https://api.fly.io"  # GraphQL lives at <api>/graphql
DEFAULT_FLAPS_BASE_URL = "https://api.machines.dev"  # the Machines REST API


class FlyConnection(BaseModel):
    """Endpoints and credentials. ``repr`` and ``str`` never show the token."""

    model_config = ConfigDict(frozen=True)

    api_base_url: str = DEFAULT_API_BASE_URL
    flaps_base_url: str = DEFAULT_FLAPS_BASE_URL
    token: SecretStr

    @field_validator("api_base_url", "flaps_base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"must be an http(s) URL, got {value!r}")
        return value

    @field_validator("token")
    @classmethod
    def _non_empty(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value().strip():
            raise ValueError("is empty")
        return value

    @classmethod
    def resolve(
        cls,
        *,
        token: str | None = None,
        api_base_url: str | None = None,
        flaps_base_url: str | None = None,
        environ: dict[str, str] | None = None,
    ) -> FlyConnection:
        """Explicit values win over the environment (``FLY_API_TOKEN``, ``FLY_API_BASE_URL``,
        ``FLY_FLAPS_BASE_URL``, as flyctl reads them)."""
        env = os.environ if environ is None else environ
        token = token or env.get("FLY_API_TOKEN") or env.get("FLY_ACCESS_TOKEN")
        if not token:
            raise FlyConfigError(
                "no Fly API token: set FLY_API_TOKEN (or the stack's secret config fly:apiToken)"
            )
        try:
            return cls(
                token=SecretStr(token),
                api_base_url=api_base_url or env.get("FLY_API_BASE_URL") or DEFAULT_API_BASE_URL,
                flaps_base_url=flaps_base_url or env.get("FLY_FLAPS_BASE_URL") or DEFAULT_FLAPS_BASE_URL,
            )
        except ValueError as exc:  # pydantic's ValidationError; its text never holds SecretStr values
            raise FlyConfigError(f"invalid Fly connection settings: {exc}") from None

    def authorization(self) -> str:
        """flyctl sends macaroon tokens (``FlyV1 ...``) as they are, others as bearer tokens."""
        raw = self.token.get_secret_value().strip()
        if raw.startswith("FlyV1 ") or raw.startswith("Bearer "):
            return raw
        if raw.startswith(("fm1r_", "fm2_", "fo1_")):
            return f"FlyV1 {raw}"
        return f"Bearer {raw}"
