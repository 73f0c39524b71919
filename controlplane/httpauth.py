"""Who may call the control plane over HTTP, and from which addresses.

Authentication is a bearer token the operator configures, from a file (``--auth-token-file``, one token
a line, optionally named: ``ID TOKEN``) or an environment variable (``CONTROLPLANE_HTTP_TOKEN``), never
from the command line (argv is readable by every local user). It plugs into the ``mcp`` SDK's own
resource-server authentication (``TokenVerifier``, ``AuthSettings``): the SDK answers a request without
a valid ``Authorization: Bearer`` header with 401 before it reaches the MCP session, and binds each
session to the token that opened it. Tokens are compared in constant time (``hmac.compare_digest``);
the audit log names a token by its id, never by its value.

Host/Origin checks (DNS rebinding protection) are always on: loopback names when bound to loopback, and
the names the operator lists with ``--allowed-host`` otherwise.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Awaitable, Callable

from mcp.server.auth.provider import AccessToken
from mcp.server.auth.settings import AuthSettings
from mcp.server.transport_security import TransportSecuritySettings

from .errors import ControlPlaneError
from .guard import AuditLog, AuditLogUnwritable

log = logging.getLogger("controlplane")

TOKEN_ENV = "CONTROLPLANE_HTTP_TOKEN"
# Answers that refuse a request before it reaches an MCP session: recorded in the audit log.
REFUSALS = {401: "no valid bearer token", 403: "forbidden (Origin, or a session of another token)",
            421: "Host not allowed"}
MIN_TOKEN_LENGTH = 32
TOKEN_RE = re.compile(r"[A-Za-z0-9._~+/=-]+")  # RFC 6750 b64token
TOKEN_ID_RE = re.compile(r"[A-Za-z0-9._-]{1,64}")
LOOPBACK = ("127.0.0.1", "::1", "localhost")
LOOPBACK_HOSTS = ["127.0.0.1:*", "localhost:*", "[::1]:*"]
LOOPBACK_ORIGINS = ["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*"]
GENERATE = ("generate one with `python -c 'import secrets; print(secrets.token_urlsafe(32))'`, write it to a "
            f"file only you can read (chmod 600) and pass --auth-token-file FILE, or set {TOKEN_ENV}; clients "
            "send it as the header `Authorization: Bearer <token>`")


def token_id(token: str) -> str:
    """The id of an unnamed token: a short digest, enough to tell tokens apart in the audit log and
    useless to recover the token from."""
    return "sha256:" + hashlib.sha256(token.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class BearerTokens:
    """The ``mcp`` SDK's ``TokenVerifier``: a token matches one the operator configured, or nothing."""

    tokens: tuple[tuple[str, str], ...]  # (id, token)

    async def verify_token(self, token: str) -> AccessToken | None:
        found = None
        candidate = token.encode()
        for id_, known in self.tokens:  # every one compared, so the time does not say which came close
            if hmac.compare_digest(candidate, known.encode()):
                found = id_
        if found is None:
            return None
        # `token` is not kept: the id is what the rest of the server (and the audit log) sees.
        return AccessToken(token=found, client_id=found, scopes=[])

    @property
    def values(self) -> tuple[str, ...]:
        return tuple(t for _, t in self.tokens)


def _check_token(token: str, where: str) -> None:
    if len(token) < MIN_TOKEN_LENGTH:
        raise ControlPlaneError(f"{where}: the token is {len(token)} characters long, shorter than "
                                f"{MIN_TOKEN_LENGTH}", GENERATE)
    if not TOKEN_RE.fullmatch(token):
        raise ControlPlaneError(f"{where}: the token has characters a bearer token cannot have (only letters, "
                                "digits and -._~+/=)", GENERATE)


def load_tokens(token_file: Path | None, environ: dict[str, str] | None = None) -> BearerTokens | None:
    """The configured tokens, or None when none is configured. A file must be readable by its owner
    only, as ssh requires of a private key."""
    env = os.environ if environ is None else environ
    tokens: list[tuple[str, str]] = []
    if token_file is not None:
        try:
            mode = token_file.stat().st_mode
            text = token_file.read_text(encoding="utf-8")
        except OSError as exc:
            raise ControlPlaneError(f"cannot read the token file {token_file}: {exc.strerror}",
                                    "pass --auth-token-file the path of a file holding the token") from None
        except UnicodeDecodeError:
            raise ControlPlaneError(f"the token file {token_file} is not text",
                                    "write one token a line (optionally `ID TOKEN`)") from None
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise ControlPlaneError(f"the token file {token_file} can be read by other users "
                                    f"(mode {stat.S_IMODE(mode):o})", f"run `chmod 600 {token_file}`")
        for number, line in enumerate(text.splitlines(), 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            parts = line.split()
            if len(parts) > 2:
                raise ControlPlaneError(f"{token_file} line {number}: expected `TOKEN` or `ID TOKEN`",
                                        "write one token a line, optionally preceded by its id and a space")
            id_, token = (parts[0], parts[1]) if len(parts) == 2 else (None, parts[0])
            if id_ is not None and not TOKEN_ID_RE.fullmatch(id_):
                raise ControlPlaneError(f"{token_file} line {number}: the id is not 1-64 letters, digits or -._",
                                        "name the token with letters, digits, dashes, dots or underscores")
            _check_token(token, f"{token_file} line {number}")
            tokens.append((id_ or token_id(token), token))
        if not tokens:
            raise ControlPlaneError(f"the token file {token_file} holds no token", GENERATE)
    value = env.get(TOKEN_ENV, "").strip()
    if value:
        _check_token(value, f"${TOKEN_ENV}")
        tokens.append((f"env:{token_id(value)}", value))
    ids = [i for i, _ in tokens]
    duplicate = next((i for i in ids if ids.count(i) > 1), None)
    if duplicate:
        raise ControlPlaneError(f"token id {duplicate} is given twice", "give each token its own id")
    return BearerTokens(tuple(tokens)) if tokens else None


def auth_settings(host: str, port: int) -> AuthSettings:
    """The SDK's auth settings for a resource server whose tokens are configured here (no OAuth
    authorization server: the issuer is this server itself, and no metadata endpoint is published)."""
    shown = f"[{host}]" if ":" in host else host
    return AuthSettings(issuer_url=f"http://{shown}:{port}", resource_server_url=None)


def transport_security(host: str, allowed_hosts: list[str]) -> TransportSecuritySettings:
    """Host/Origin checks, always on. ``allowed_hosts``: ``name`` or ``name:port`` as clients address
    the server (a name without a port allows any port)."""
    hosts: list[str] = list(LOOPBACK_HOSTS) if host in LOOPBACK else []
    origins: list[str] = list(LOOPBACK_ORIGINS) if host in LOOPBACK else []
    for allowed in allowed_hosts:
        name = allowed.strip()
        if not name or "/" in name or any(c.isspace() for c in name):
            raise ControlPlaneError(f"--allowed-host {allowed!r} is not a host name",
                                    "pass the host name clients use, e.g. --allowed-host mcp.example.com:8765")
        has_port = bool(re.search(r":(\d+|\*)$", name)) and not name.endswith("]")
        names = [name] if has_port else [name, f"{name}:*"]
        hosts += names
        origins += [f"{scheme}://{n}" for n in names for scheme in ("http", "https")]
    if host not in LOOPBACK and not allowed_hosts:
        raise ControlPlaneError(
            f"serving on {host}, beyond loopback, needs the host names clients use to reach it (DNS rebinding "
            "protection answers only requests addressed to them)",
            "pass --allowed-host NAME[:PORT] for each name clients use, e.g. --allowed-host mcp.example.com:8765")
    return TransportSecuritySettings(enable_dns_rebinding_protection=True, allowed_hosts=hosts, allowed_origins=origins)


class AuditRefusals:
    """ASGI middleware around the HTTP app: a request refused before it reaches an MCP session (no or a
    wrong token, a foreign Host or Origin) is an audit line too (``tool`` ``http``, ``outcome``
    ``refused``), naming the peer; what the request carried is not recorded."""

    def __init__(self, app: Callable[..., Awaitable[None]], audit: AuditLog) -> None:
        self.app, self.audit = app, audit

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return
        status: list[int] = []

        async def watch(message: dict[str, Any]) -> None:
            if message.get("type") == "http.response.start":
                status.append(int(message.get("status", 0)))
            await send(message)

        try:
            await self.app(scope, receive, watch)
        finally:
            if status and status[0] in REFUSALS:
                peer = scope.get("client")
                headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
                try:
                    self.audit.record("http", {"method": scope.get("method"), "path": scope.get("path")}, "refused",
                                      f"{status[0]}: {REFUSALS[status[0]]}",
                                      caller={"transport": "http", "token_id": None,
                                              "peer": f"{peer[0]}:{peer[1]}" if peer else None,
                                              "session": headers.get("mcp-session-id")})
                except AuditLogUnwritable as exc:
                    log.error("a refused HTTP request could not be recorded: %s", exc)
