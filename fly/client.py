"""A typed client for Fly's Machines REST API, and the few GraphQL calls REST has no endpoint for.

One ``httpx.Client`` (one connection pool, one SSL context) per ``FlyClient``; a process keeps one
``FlyClient`` per connection (see ``fly.providers.base``). Retries:

- a 429 means Fly refused the call before doing anything, so every call, creates included, waits and
  tries again, for as long as the rate-limit budget allows (``Retry-After`` honoured, with jitter), and
  says what it waits for;
- 5xx and lost connections are retried a few times on idempotent calls only. Whether a create that
  failed that way happened is for the resource to find out: adoption lives in ``fly.providers``, one
  rule per resource kind, never here.
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
import re
import sys
import time
from collections import deque
from contextlib import contextmanager
from typing import Any, Iterator, TypeVar

# httpx's __init__ imports its command-line client, and with it click, rich and pygments wherever they
# are installed: 0.05 s to 0.1 s, paid by the provider process on the first call of every run
# (encode/httpx#3547, discussion #3523). Nothing here runs that CLI: httpx falls back to its stub
# ``httpx.main`` while the module is marked missing, and the mark is lifted once httpx is in.
if "httpx" not in sys.modules and "httpx._main" not in sys.modules:
    sys.modules["httpx._main"] = None  # type: ignore[assignment]
    try:
        import httpx
    finally:
        del sys.modules["httpx._main"]
import httpx  # noqa: E402 - after the mark above
from pydantic import BaseModel, ValidationError

from .connection import FlyConnection
from .errors import (
    FlyAPIError,
    FlyConnectionError,
    FlyGraphQLError,
    FlyInvalidResponse,
    FlyMachineCrashed,
    FlyNotFound,
    FlyRateLimited,
    FlyServerError,
    FlyWaitTimeout,
    error_for_status,
)
from .models import (
    App,
    Certificate,
    DeployToken,
    ExecResult,
    IPAssignment,
    Lease,
    LogEntry,
    Machine,
    MachineEvent,
    Organization,
    SecretsUpdate,
    Volume,
    WaitResult,
)

log = logging.getLogger("fly")

M = TypeVar("M", bound=BaseModel)

LEASE_NONCE_HEADER = "fly-machine-lease-nonce"
WAIT_API_MAX_SECONDS = 60  # the wait endpoint refuses longer timeouts
RATE_LIMIT_BUDGET_ENV = "FLY_RATE_LIMIT_BUDGET_SECONDS"
DEFAULT_RATE_LIMIT_BUDGET = 600.0
LOGS_MAX_LINES = 200  # what one read of an app's logs returns at most
LOGS_MAX_PAGES = 10


def rate_limit_name(method: str, path: str) -> str:
    """Fly limits each action separately: name the one a call hit, e.g. ``app-create``,
    ``machine-wait``, ``volume-create``."""
    parts = [p for p in path.split("?")[0].split("/") if p and p != "v1"]
    if parts == ["graphql"]:
        return "GraphQL"
    nouns = {"apps": "app", "machines": "machine", "volumes": "volume", "secrets": "secrets",
             "ip_assignments": "ip", "certificates": "certificate"}
    noun, last_noun_index = "app", -1
    for i, part in enumerate(parts):
        if part in nouns:
            noun, last_noun_index = nouns[part], i
    tail = parts[last_noun_index + 1:]
    verb = {"GET": "get", "POST": "update", "PUT": "update", "DELETE": "delete"}[method] if method in (
        "GET", "POST", "PUT", "DELETE") else method.lower()
    if not tail:  # a collection: GET lists, POST creates
        verb = {"GET": "list", "POST": "create"}.get(method, verb)
    elif len(tail) > 1 and re.match(r"^[a-z_]+$", tail[-1]):
        verb = tail[-1]  # an action: start, stop, wait, lease, exec, extend, acme...
    return f"{noun}-{verb}"


def _budget_from_env() -> float:
    raw = os.environ.get(RATE_LIMIT_BUDGET_ENV, "")
    try:
        return float(raw) if raw.strip() else DEFAULT_RATE_LIMIT_BUDGET
    except ValueError:
        return DEFAULT_RATE_LIMIT_BUDGET


class RetryPolicy(BaseModel):
    """``rate_limit_budget``: how long one call may keep waiting out 429s (default 600 s, or
    ``FLY_RATE_LIMIT_BUDGET_SECONDS``). ``attempts``: tries of an idempotent call on 5xx and lost
    connections."""

    attempts: int = 5
    rate_limit_budget: float = DEFAULT_RATE_LIMIT_BUDGET
    initial_backoff: float = 0.2
    max_backoff: float = 10.0

    @classmethod
    def from_env(cls) -> RetryPolicy:
        return cls(rate_limit_budget=_budget_from_env())

    def backoff(self, attempt: int) -> float:
        """Exponential backoff with full jitter (so many slices do not retry in lockstep)."""
        return random.uniform(self.initial_backoff, min(self.max_backoff, self.initial_backoff * 2 ** attempt))

    def rate_limit_wait(self, retry_after: float | None, attempt: int) -> float:
        base = max(float(retry_after), 0.0) if retry_after is not None else self.backoff(attempt)
        return base + random.uniform(0.0, min(1.0, base * 0.25 + 0.05))


class FlyClient:
    """Machines REST API (``flaps``) and GraphQL. Use as a context manager, or call ``close()``."""

    def __init__(self, connection: FlyConnection, *, retry: RetryPolicy | None = None,
                 timeout: float = 30.0, transport: httpx.BaseTransport | None = None) -> None:
        self._connection = connection
        self.retry = retry or RetryPolicy.from_env()
        # Certificates are checked wherever an endpoint is HTTPS. Only when neither is (flysim on loopback)
        # is the certificate store left unloaded: it costs ~35 ms at the first call of a provider process, and
        # the client sends to these two base URLs only, never following redirects.
        tls = any(url.startswith("https://") for url in (connection.flaps_base_url, connection.api_base_url))
        self._http = httpx.Client(
            timeout=httpx.Timeout(timeout, read=timeout + WAIT_API_MAX_SECONDS),
            headers={"Authorization": connection.authorization(), "User-Agent": "artifact-slices/fly"},
            transport=transport, verify=tls, follow_redirects=False,
        )

    def __repr__(self) -> str:  # never the token
        return f"FlyClient(flaps={self._connection.flaps_base_url!r}, api={self._connection.api_base_url!r})"

    def __enter__(self) -> FlyClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # -- transport -------------------------------------------------------------------------------

    def _send(self, method: str, path: str, *, json: Any = None, params: dict[str, Any] | None = None,
              headers: dict[str, str] | None = None, resource: str | None = None,
              base: str | None = None) -> httpx.Response:
        url = (base or self._connection.flaps_base_url) + path
        try:
            response = self._http.request(method, url, json=json, params=params, headers=headers)
        except httpx.TimeoutException as exc:
            raise FlyConnectionError(method, path, f"timed out: {type(exc).__name__}") from None
        except httpx.TransportError as exc:
            raise FlyConnectionError(method, path, type(exc).__name__) from None
        if response.status_code >= 400:
            try:
                body: Any = response.json()
            except ValueError:
                body = response.text
            retry_after = None
            if "retry-after" in response.headers:
                try:
                    retry_after = float(response.headers["retry-after"])
                except ValueError:
                    retry_after = None
            raise error_for_status(response.status_code, body, method=method, path=path, resource=resource,
                                   retry_after=retry_after)
        return response

    def _request(self, method: str, path: str, *, idempotent: bool, **kwargs: Any) -> httpx.Response:
        """Send, waiting out 429s within the rate-limit budget; with ``idempotent``, also retry 5xx and
        lost connections ``retry.attempts`` times."""
        started = time.monotonic()
        limited = failed = 0
        while True:
            try:
                return self._send(method, path, **kwargs)
            except FlyRateLimited as exc:
                limited += 1
                waited = time.monotonic() - started
                delay = self.retry.rate_limit_wait(exc.retry_after, limited)
                limit = rate_limit_name(method, path)
                if waited + delay > self.retry.rate_limit_budget:
                    raise exc.budget_spent(limit, waited, self.retry.rate_limit_budget) from None
                log.info("waiting for Fly's %s rate limit (%s, retry in %.1fs)", limit,
                         kwargs.get("resource") or path, delay)
                time.sleep(delay)
            except (FlyServerError, FlyConnectionError) as exc:
                failed += 1
                if not idempotent or failed >= self.retry.attempts:
                    raise
                delay = self.retry.backoff(failed)
                log.info("retrying %s %s in %.1fs after %s", method, path, delay, type(exc).__name__)
                time.sleep(delay)

    @staticmethod
    def _parse(model: type[M], response: httpx.Response, method: str, path: str, key: str | None = None) -> M:
        try:
            data = response.json()
            if key is not None:
                data = data[key]
            return model.model_validate(data)
        except (ValueError, KeyError, TypeError, ValidationError) as exc:
            raise FlyInvalidResponse(method, path, _short(exc)) from None

    @staticmethod
    def _parse_list(model: type[M], response: httpx.Response, method: str, path: str,
                    key: str | None = None) -> list[M]:
        try:
            data = response.json()
            if key is not None and isinstance(data, dict):
                data = data.get(key) or []
            if not isinstance(data, list):
                raise TypeError(f"expected a list, got {type(data).__name__}")
            return [model.model_validate(item) for item in data]
        except (ValueError, TypeError, ValidationError) as exc:
            raise FlyInvalidResponse(method, path, _short(exc)) from None

    # -- apps ----------------------------------------------------------------------------------------

    def get_app(self, name: str) -> App:
        path = f"/v1/apps/{name}"
        return self._parse(App, self._request("GET", path, idempotent=True, resource=f"app {name}"), "GET", path)

    def find_app(self, name: str) -> App | None:
        try:
            return self.get_app(name)
        except FlyNotFound:
            return None

    def list_apps(self, org_slug: str) -> list[App]:
        path = "/v1/apps"
        response = self._request("GET", path, idempotent=True, params={"org_slug": org_slug},
                                 resource=f"org {org_slug}")
        return self._parse_list(App, response, "GET", path, key="apps")

    def create_app(self, name: str, org_slug: str, *, network: str | None = None) -> App:
        """Create an app. The idempotency key is derived from org and name, so Fly answers a repeat of
        this create (a retry after a lost answer, or a rerun after a crash) with the app it made."""
        path = "/v1/apps"
        key = hashlib.sha256(f"artifact-slices/app/{org_slug}/{name}".encode()).hexdigest()[:32]
        body: dict[str, Any] = {"name": name, "org_slug": org_slug, "idempotency_key": key}
        if network:
            body["network"] = network
        response = self._request("POST", path, idempotent=True, json=body, resource=f"app {name}")
        try:
            answer = response.json() if response.content else {}
        except ValueError:
            answer = {}
        answer = answer if isinstance(answer, dict) else {}
        return App.model_validate({"status": "pending", **answer, "name": name,
                                   "organization": {"slug": org_slug}})

    def delete_app(self, name: str) -> None:
        """Delete an app with everything in it. Deleting an app that is already gone succeeds."""
        path = f"/v1/apps/{name}"
        try:
            self._request("DELETE", path, idempotent=True, resource=f"app {name}")
        except FlyNotFound:
            pass

    # -- volumes -------------------------------------------------------------------------------------

    def list_volumes(self, app: str) -> list[Volume]:
        path = f"/v1/apps/{app}/volumes"
        return self._parse_list(Volume, self._request("GET", path, idempotent=True, resource=f"app {app}"),
                                "GET", path)

    def get_volume(self, app: str, volume_id: str) -> Volume:
        path = f"/v1/apps/{app}/volumes/{volume_id}"
        response = self._request("GET", path, idempotent=True, resource=f"volume {volume_id} of app {app}")
        return self._parse(Volume, response, "GET", path)

    def find_volume(self, app: str, volume_id: str) -> Volume | None:
        try:
            volume = self.get_volume(app, volume_id)
        except FlyNotFound:
            return None
        return None if volume.state in ("destroyed", "destroying", "pending_destroy") else volume

    def create_volume(self, app: str, *, name: str, region: str, size_gb: int,
                      encrypted: bool = True, require_unique_zone: bool = False) -> Volume:
        """Sent once (retried only when refused with 429): volume names are not unique on Fly, so what a
        lost answer made is for the caller to find."""
        path = f"/v1/apps/{app}/volumes"
        body = {"name": name, "region": region, "size_gb": size_gb, "encrypted": encrypted,
                "require_unique_zone": require_unique_zone}
        response = self._request("POST", path, idempotent=False, json=body, resource=f"volume {name} of app {app}")
        return self._parse(Volume, response, "POST", path)

    def extend_volume(self, app: str, volume_id: str, size_gb: int) -> Volume:
        path = f"/v1/apps/{app}/volumes/{volume_id}/extend"
        response = self._request("PUT", path, idempotent=True, json={"size_gb": size_gb},
                                 resource=f"volume {volume_id} of app {app}")
        return self._parse(Volume, response, "PUT", path, key="volume")

    def delete_volume(self, app: str, volume_id: str) -> None:
        path = f"/v1/apps/{app}/volumes/{volume_id}"
        try:
            self._request("DELETE", path, idempotent=True, resource=f"volume {volume_id} of app {app}")
        except FlyNotFound:
            pass

    # -- machines ------------------------------------------------------------------------------------

    def list_machines(self, app: str, *, include_deleted: bool = False,
                      metadata: dict[str, str] | None = None) -> list[Machine]:
        path = f"/v1/apps/{app}/machines"
        params: dict[str, Any] = {}
        if include_deleted:
            params["include_deleted"] = "true"
        for key, value in (metadata or {}).items():
            params[f"metadata.{key}"] = value
        response = self._request("GET", path, idempotent=True, params=params or None, resource=f"app {app}")
        machines = self._parse_list(Machine, response, "GET", path)
        # Filter here too: the filter is a hint to the server, the answer is what we check.
        for key, value in (metadata or {}).items():
            machines = [m for m in machines if (m.config.get("metadata") or {}).get(key) == value]
        return machines

    def get_machine(self, app: str, machine_id: str) -> Machine:
        path = f"/v1/apps/{app}/machines/{machine_id}"
        response = self._request("GET", path, idempotent=True, resource=f"machine {machine_id} of app {app}")
        return self._parse(Machine, response, "GET", path)

    def find_machine(self, app: str, machine_id: str) -> Machine | None:
        try:
            machine = self.get_machine(app, machine_id)
        except FlyNotFound:
            return None
        return None if machine.state == "destroyed" else machine

    def create_machine(self, app: str, config: dict[str, Any], *, name: str | None = None,
                       region: str | None = None, skip_launch: bool = False,
                       min_secrets_version: int | None = None, lease_ttl: int | None = None) -> Machine:
        """Sent once (retried only when refused with 429). Machine names are unique within an app, so
        a repeat of a named create is answered 409 ``already_exists`` naming the machine it made."""
        path = f"/v1/apps/{app}/machines"
        body: dict[str, Any] = {"config": config}
        if name:
            body["name"] = name
        if region:
            body["region"] = region
        if skip_launch:
            body["skip_launch"] = True
        if min_secrets_version is not None:
            body["min_secrets_version"] = min_secrets_version
        if lease_ttl is not None:
            body["lease_ttl"] = lease_ttl
        response = self._request("POST", path, idempotent=False, json=body,
                                 resource=f"machine {name} of app {app}" if name else f"new machine of app {app}")
        return self._parse(Machine, response, "POST", path)

    def update_machine(self, app: str, machine_id: str, config: dict[str, Any], *,
                       lease_nonce: str | None = None, current_version: str | None = None,
                       skip_launch: bool | None = None, min_secrets_version: int | None = None) -> Machine:
        """Update in place. With ``current_version`` Fly refuses (409) if someone changed it meanwhile,
        which makes the retry of a lost response safe."""
        path = f"/v1/apps/{app}/machines/{machine_id}"
        body: dict[str, Any] = {"config": config}
        if current_version:
            body["current_version"] = current_version
        if skip_launch is not None:
            body["skip_launch"] = skip_launch
        if min_secrets_version is not None:
            body["min_secrets_version"] = min_secrets_version
        headers = {LEASE_NONCE_HEADER: lease_nonce} if lease_nonce else None
        response = self._request("POST", path, idempotent=current_version is not None, json=body,
                                 headers=headers, resource=f"machine {machine_id} of app {app}")
        return self._parse(Machine, response, "POST", path)

    def _machine_action(self, app: str, machine_id: str, action: str, *, json: Any = None,
                        lease_nonce: str | None = None, params: dict[str, Any] | None = None) -> httpx.Response:
        path = f"/v1/apps/{app}/machines/{machine_id}/{action}"
        headers = {LEASE_NONCE_HEADER: lease_nonce} if lease_nonce else None
        return self._request("POST", path, idempotent=True, json=json, headers=headers, params=params,
                             resource=f"machine {machine_id} of app {app}")

    def start_machine(self, app: str, machine_id: str, *, lease_nonce: str | None = None) -> None:
        self._machine_action(app, machine_id, "start", lease_nonce=lease_nonce)

    def stop_machine(self, app: str, machine_id: str, *, signal: str | None = None,
                     timeout: str | None = None, lease_nonce: str | None = None) -> None:
        body = {k: v for k, v in {"signal": signal, "timeout": timeout}.items() if v}
        self._machine_action(app, machine_id, "stop", json=body or None, lease_nonce=lease_nonce)

    def suspend_machine(self, app: str, machine_id: str, *, lease_nonce: str | None = None) -> None:
        self._machine_action(app, machine_id, "suspend", lease_nonce=lease_nonce)

    def restart_machine(self, app: str, machine_id: str, *, lease_nonce: str | None = None) -> None:
        self._machine_action(app, machine_id, "restart", lease_nonce=lease_nonce)

    def delete_machine(self, app: str, machine_id: str, *, force: bool = False,
                       lease_nonce: str | None = None) -> None:
        path = f"/v1/apps/{app}/machines/{machine_id}"
        headers = {LEASE_NONCE_HEADER: lease_nonce} if lease_nonce else None
        try:
            self._request("DELETE", path, idempotent=True, params={"force": "true"} if force else None,
                          headers=headers, resource=f"machine {machine_id} of app {app}")
        except FlyNotFound:
            pass

    def wait_machine(self, app: str, machine_id: str, state: str = "started", *, timeout: float = 60.0,
                     instance_id: str | None = None, version: str | None = None,
                     poll: float = WAIT_API_MAX_SECONDS) -> WaitResult:
        """Block on Fly's wait endpoint until the machine reaches ``state``. The endpoint takes at most
        60 seconds a call, so longer waits are several calls; no sleeping in between.

        Waiting for ``started`` in windows of ``poll`` seconds: after a window that did not see it start,
        a machine that is stopped with a non-zero exit event is reported as crashed at once
        (``FlyMachineCrashed``) instead of after the whole timeout."""
        path = f"/v1/apps/{app}/machines/{machine_id}/wait"
        resource = f"machine {machine_id} of app {app}"
        deadline = time.monotonic() + timeout
        while True:
            window = min(poll, WAIT_API_MAX_SECONDS)
            remaining = max(1, min(int(window), int(deadline - time.monotonic() + 0.999)))
            params: dict[str, Any] = {"state": state, "timeout": remaining}
            if instance_id and state != "destroyed":
                params["instance_id"] = instance_id
            if version and state != "destroyed":
                params["version"] = version
            try:
                response = self._request("GET", path, idempotent=True, params=params, resource=resource)
                try:
                    return self._parse(WaitResult, response, "GET", path)
                except FlyInvalidResponse:  # an empty or other 200 answer still means "reached"
                    return WaitResult(ok=True, state=state)
            except FlyWaitTimeout:
                if state == "started":
                    self._raise_if_crashed(app, machine_id)
                if time.monotonic() >= deadline:
                    raise FlyWaitTimeout(status_code=408, method="GET", path=path, resource=resource,
                                         error=f"did not reach state {state!r} within {timeout:.0f}s") from None

    def _raise_if_crashed(self, app: str, machine_id: str) -> None:
        machine = self.find_machine(app, machine_id)
        if machine is None or machine.state not in ("stopped", "failed"):
            return
        events = machine.events or self.list_machine_events(app, machine_id)
        exits = [e for e in events if e.type == "exit"]
        if exits:
            last = max(exits, key=lambda e: e.timestamp or 0)
            code = last.exit_code
            if code not in (None, 0):
                raise FlyMachineCrashed(app, machine_id, code, machine.state)

    def list_machine_events(self, app: str, machine_id: str) -> list[MachineEvent]:
        path = f"/v1/apps/{app}/machines/{machine_id}/events"
        response = self._request("GET", path, idempotent=True, resource=f"machine {machine_id} of app {app}")
        return self._parse_list(MachineEvent, response, "GET", path)

    def exec_machine(self, app: str, machine_id: str, command: list[str], *, timeout: int = 30) -> ExecResult:
        path = f"/v1/apps/{app}/machines/{machine_id}/exec"
        response = self._request("POST", path, idempotent=False, json={"command": command, "timeout": timeout},
                                 resource=f"machine {machine_id} of app {app}")
        return self._parse(ExecResult, response, "POST", path)

    # leases: a machine update under a lease cannot race another deployer's update.

    def acquire_lease(self, app: str, machine_id: str, *, ttl: int = 60, description: str = "") -> Lease:
        path = f"/v1/apps/{app}/machines/{machine_id}/lease"
        response = self._request("POST", path, idempotent=False, json={"ttl": ttl, "description": description},
                                 resource=f"machine {machine_id} of app {app}")
        # fly-go reads the lease from a {"status", "data"} envelope; the spec documents a flat Lease.
        try:
            wrapped = isinstance(response.json(), dict) and "data" in response.json()
        except ValueError:
            wrapped = False
        return self._parse(Lease, response, "POST", path, key="data" if wrapped else None)

    def release_lease(self, app: str, machine_id: str, nonce: str) -> None:
        path = f"/v1/apps/{app}/machines/{machine_id}/lease"
        try:
            self._request("DELETE", path, idempotent=True, headers={LEASE_NONCE_HEADER: nonce},
                          resource=f"machine {machine_id} of app {app}")
        except FlyNotFound:
            pass

    @contextmanager
    def lease(self, app: str, machine_id: str, *, ttl: int = 60, description: str = "") -> Iterator[Lease]:
        lease = self.acquire_lease(app, machine_id, ttl=ttl, description=description)
        try:
            yield lease
        finally:
            try:
                self.release_lease(app, machine_id, lease.nonce)
            except FlyAPIError as exc:  # the lease expires by itself; do not hide the real error
                log.warning("could not release lease on %s: %s", machine_id, exc)

    # -- secrets, IPs, certificates, tokens ------------------------------------------------------------

    def set_secrets(self, app: str, values: dict[str, str | None]) -> int:
        """Set (or, with ``None``, unset) secrets; returns the app's new secrets version, which goes into
        ``min_secrets_version`` of machine creates and updates."""
        path = f"/v1/apps/{app}/secrets"
        response = self._request("POST", path, idempotent=True, json={"values": values}, resource=f"app {app}")
        return self._parse(SecretsUpdate, response, "POST", path).secrets_version

    def list_secret_names(self, app: str) -> dict[str, str | None]:
        """Names and digests only."""
        path = f"/v1/apps/{app}/secrets"
        response = self._request("GET", path, idempotent=True, resource=f"app {app}")
        try:
            data = response.json()
            items = data.get("secrets", []) if isinstance(data, dict) else data
            return {item["name"]: item.get("digest") for item in items}
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise FlyInvalidResponse("GET", path, _short(exc)) from None

    def list_ips(self, app: str) -> list[IPAssignment]:
        path = f"/v1/apps/{app}/ip_assignments"
        response = self._request("GET", path, idempotent=True, resource=f"app {app}")
        return self._parse_list(IPAssignment, response, "GET", path, key="ips")

    def assign_ip(self, app: str, ip_type: str, *, region: str | None = None, network: str | None = None,
                  service_name: str | None = None, org_slug: str | None = None) -> IPAssignment:
        path = f"/v1/apps/{app}/ip_assignments"
        body = {k: v for k, v in {"type": ip_type, "region": region, "network": network,
                                  "service_name": service_name, "org_slug": org_slug}.items() if v}
        response = self._request("POST", path, idempotent=False, json=body, resource=f"app {app}")
        return self._parse(IPAssignment, response, "POST", path)

    def release_ip(self, app: str, ip: str) -> None:
        path = f"/v1/apps/{app}/ip_assignments/{ip}"
        try:
            self._request("DELETE", path, idempotent=True, resource=f"ip {ip} of app {app}")
        except FlyNotFound:
            pass

    def request_acme_certificate(self, app: str, hostname: str) -> Certificate:
        path = f"/v1/apps/{app}/certificates/acme"
        response = self._request("POST", path, idempotent=True, json={"hostname": hostname},
                                 resource=f"certificate {hostname} of app {app}")
        return self._parse(Certificate, response, "POST", path)

    def get_certificate(self, app: str, hostname: str) -> Certificate:
        path = f"/v1/apps/{app}/certificates/{hostname}"
        response = self._request("GET", path, idempotent=True, resource=f"certificate {hostname} of app {app}")
        return self._parse(Certificate, response, "GET", path)

    def delete_certificate(self, app: str, hostname: str) -> None:
        path = f"/v1/apps/{app}/certificates/{hostname}"
        try:
            self._request("DELETE", path, idempotent=True, resource=f"certificate {hostname} of app {app}")
        except FlyNotFound:
            pass

    def create_deploy_token(self, app: str, *, expiry: str | None = None) -> DeployToken:
        path = f"/v1/apps/{app}/deploy_token"
        response = self._request("POST", path, idempotent=False, json={"expiry": expiry} if expiry else {},
                                 resource=f"app {app}")
        return self._parse(DeployToken, response, "POST", path)

    # -- logs ---------------------------------------------------------------------------------------------

    def app_logs(self, app: str, *, instance: str | None = None, region: str | None = None,
                 max_lines: int = LOGS_MAX_LINES, max_pages: int = LOGS_MAX_PAGES) -> list[LogEntry]:
        """An app's most recent log lines (at most ``max_lines``, oldest first), read as ``fly logs
        --no-tail`` reads them: ``GET <api>/api/v1/apps/<app>/logs`` with ``next_token`` (always sent,
        empty at first), and ``instance`` (a machine id) or ``region`` (fly-go ``resource_logs.go``,
        ``GetAppLogs``; flyctl drops the region when a machine is named, ``internal/command/logs/logs.go``).
        The answer's ``meta.next_token`` is followed, as flyctl's poller does (``logs/polling.go``), until a
        page comes back empty or after ``max_pages`` pages, so a read ends even while the app keeps
        logging."""
        path = f"/api/v1/apps/{app}/logs"
        params: dict[str, str] = {"next_token": ""}
        if instance:
            params["instance"] = instance
        elif region:
            params["region"] = region
        resource = f"logs of machine {instance} of app {app}" if instance else f"logs of app {app}"
        lines: deque[LogEntry] = deque(maxlen=max(1, max_lines))
        for _ in range(max(1, max_pages)):
            response = self._request("GET", path, idempotent=True, params=params, resource=resource,
                                     base=self._connection.api_base_url)
            try:
                answer = response.json()
                page = [LogEntry.model_validate(item["attributes"]) for item in answer.get("data") or []]
                token = str((answer.get("meta") or {}).get("next_token") or "")
            except (ValueError, KeyError, TypeError, AttributeError, ValidationError) as exc:
                raise FlyInvalidResponse("GET", path, _short(exc)) from None
            lines.extend(page)
            if not page or not token:
                break
            params["next_token"] = token
        return list(lines)

    # -- GraphQL (only where REST has no endpoint) -------------------------------------------------------

    def graphql(self, operation: str, query: str, variables: dict[str, Any], *, idempotent: bool) -> dict[str, Any]:
        path = "/graphql"
        response = self._request("POST", path, idempotent=idempotent, base=self._connection.api_base_url,
                                 json={"query": query, "variables": variables, "operationName": operation})
        try:
            payload = response.json()
        except ValueError as exc:
            raise FlyInvalidResponse("POST", path, _short(exc)) from None
        errors = payload.get("errors") if isinstance(payload, dict) else None
        if errors:
            raise FlyGraphQLError(operation, [str(e.get("message", e)) for e in errors],
                                  [str((e.get("extensions") or {}).get("code", "")) for e in errors])
        if not isinstance(payload, dict) or not isinstance(payload.get("data"), dict):
            raise FlyInvalidResponse("POST", path, f"{operation}: no data in the answer")
        return payload["data"]

    def get_organization(self, slug: str) -> Organization | None:
        data = self.graphql(
            "OrgBySlug", "query OrgBySlug($slug: String!) { organization(slug: $slug) { id slug name } }",
            {"slug": slug}, idempotent=True)
        org = data.get("organization")
        return Organization.model_validate(org) if org else None

    def create_organization(self, name: str) -> Organization:
        data = self.graphql(
            "CreateOrg",
            "mutation CreateOrg($input: CreateOrganizationInput!) "
            "{ createOrganization(input: $input) { organization { id slug name } } }",
            {"input": {"name": name}}, idempotent=False)
        return Organization.model_validate(data["createOrganization"]["organization"])

    def create_org_token(self, org_id: str, name: str, *, expiry: str | None = None,
                         profile: str = "deploy_organization") -> dict[str, Any]:
        """An org-scoped (limited access) token. The answer holds the token value: handle as a secret.
        Sent once: whether a lost answer minted one is for the caller to find (``list_org_tokens``)."""
        variables: dict[str, Any] = {"input": {"organizationId": org_id, "name": name, "profile": profile}}
        if expiry:
            variables["input"]["expiry"] = expiry
        data = self.graphql(
            "CreateOrgToken",
            "mutation CreateOrgToken($input: CreateLimitedAccessTokenInput!) { createLimitedAccessToken(input: $input) "
            "{ limitedAccessToken { id name profile expiresAt token } } }",
            variables, idempotent=False)
        return dict(data["createLimitedAccessToken"]["limitedAccessToken"])

    def list_org_tokens(self, org_id: str) -> list[dict[str, Any]]:
        """The org's live limited access tokens (id, name, profile, expiresAt; never their values)."""
        data = self.graphql(
            "OrgTokens",
            "query OrgTokens($id: ID!) { organization(id: $id) { limitedAccessTokens "
            "{ nodes { id name profile expiresAt revokedAt } } } }",
            {"id": org_id}, idempotent=True)
        org = data.get("organization") or {}
        nodes = ((org.get("limitedAccessTokens") or {}).get("nodes")) or []
        return [dict(n) for n in nodes if isinstance(n, dict) and not n.get("revokedAt")]

    def revoke_org_token(self, token_id: str) -> None:
        """Revoke a token; one that is already gone counts as revoked."""
        try:
            self.graphql(
                "RevokeOrgToken",
                "mutation RevokeOrgToken($input: DeleteLimitedAccessTokenInput!) "
                "{ deleteLimitedAccessToken(input: $input) { token } }",
                {"input": {"id": token_id}}, idempotent=True)
        except FlyGraphQLError as exc:
            if not any("could not find" in m.lower() or "not found" in m.lower() for m in exc.messages):
                raise


def _short(exc: BaseException) -> str:
    text = str(exc).replace("\n", " ")
    return text if len(text) < 400 else text[:400] + "..."
