"""Bearer/FlyV1 token authentication and scope checks.

Three kinds of principal:
  server  the token given on the command line: all-powerful
  org     a `deploy_organization` limited access token (GraphQL): one org
  app     an app deploy token (`POST /v1/apps/{app}/deploy_token`): one app

Only sha256 digests of issued tokens are kept, so the state file and the admin
view cannot leak them. Token values are never logged or echoed.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from dataclasses import dataclass

from . import ids
from .errors import ApiError
from .state import App, Store, Token


def sha256(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


@dataclass(frozen=True)
class Principal:
    kind: str  # "server" | "org" | "app"
    token_id: str
    org_slug: str | None = None
    app_name: str | None = None

    @property
    def owner(self) -> str:
        # Shown as a lease owner, like Fly's `<id>@tokens.fly.io`.
        return f"{self.token_id}@tokens.fly.io"

    def can_org(self, slug: str) -> bool:
        if self.kind == "server":
            return True
        return self.kind == "org" and self.org_slug == slug

    def can_app(self, app: App) -> bool:
        if self.kind == "server":
            return True
        if self.kind == "org":
            return app.org_slug == self.org_slug
        return self.kind == "app" and app.name == self.app_name


def unauthorized(message: str = "unauthorized") -> ApiError:
    return ApiError(401, message)


def strip_scheme(header: str | None) -> str | None:
    """`Bearer X` / `FlyV1 X` (possibly doubled, e.g. `FlyV1 FlyV1 fm2_..`) -> X."""
    if not header:
        return None
    value = header.strip()
    found = False
    while True:
        low = value.lower()
        for scheme in ("bearer ", "flyv1 "):
            if low.startswith(scheme):
                value = value[len(scheme):].strip()
                found = True
                break
        else:
            break
    return value if found and value else None


class Auth:
    def __init__(self, server_token: str, store: Store) -> None:
        self._server_digest = sha256(server_token)
        self.store = store

    def authenticate(self, header: str | None) -> Principal:
        value = strip_scheme(header)
        if value is None:
            raise unauthorized("You must be authenticated to view this.")
        digest = sha256(value)
        if hmac.compare_digest(digest, self._server_digest):
            return Principal(kind="server", token_id="flysim-root")
        for tok in self.store.world.tokens.values():
            if hmac.compare_digest(tok.sha256, digest):
                if tok.revoked:
                    raise unauthorized("Authenticate: token validation error")
                if tok.expires_at is not None and tok.expires_at <= time.time():
                    raise unauthorized("Authenticate: token validation error")
                return Principal(kind=tok.kind, token_id=tok.id, org_slug=tok.org_slug, app_name=tok.app_name)
        raise unauthorized("Authenticate: token validation error")

    def issue(
        self, *, kind: str, name: str, org_slug: str, app_name: str | None = None, expires_at: int | None = None
    ) -> tuple[Token, str]:
        value = ids.token_value()
        tok = Token(
            id=ids.opaque("tok_", 8),
            name=name,
            kind=kind,
            sha256=sha256(value),
            org_slug=org_slug,
            app_name=app_name,
            expires_at=expires_at,
        )
        self.store.world.tokens[tok.id] = tok
        return tok, value

    def find(self, *, token_id: str | None = None, value: str | None = None) -> Token | None:
        if token_id:
            return self.store.world.tokens.get(token_id)
        if value:
            raw = strip_scheme(value) or value
            digest = sha256(raw)
            for tok in self.store.world.tokens.values():
                if hmac.compare_digest(tok.sha256, digest):
                    return tok
        return None
