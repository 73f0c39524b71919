"""A typed client for Fly's Machines REST API, and the few GraphQL calls REST has no endpoint for.

One ``httpx.Client`` per ``FlyClient``. Idempotent calls are retried with exponential backoff and jitter
on 429 (honouring ``Retry-After``), 5xx and connection errors; creates are made safe to retry by adopting
what a lost response created (by name, by a create token in metadata, or by a before/after listing).
"""

from __future__ import annotations

import logging
import secrets as _secrets
import time
from contextlib import contextmanager
from typing import Any, Callable, Iterator, TypeVar

import httpx
from pydantic import BaseModel, ValidationError
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt, stop_after_delay
from tenacity.wait import wait_exponential, wait_random

from .connection import FlyConnection
from .errors import (
    FlyAPIError,
    FlyConnectionError,
    FlyGraphQLError,
    FlyInvalidResponse,
    FlyNameTaken,
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
# Metadata key under which a create carries a one-off token, so a retry after a lost response can find
# the machine the first attempt made instead of making a second one.
CREATE_TOKEN_METADATA_KEY = "fly_client_create_token"
WAIT_API_MAX_SECONDS = 60  # the wait endpoint refuses longer timeouts


def _is_retryable(exc: BaseException) -> bool:
    return isinstance(exc, (FlyRateLimited, FlyServerError, FlyConnectionError))


def _is_refused(exc: BaseException) -> bool:
    """A 429 means Fly refused the call before doing anything: safe to retry even a non-idempotent one."""
    return isinstance(exc, FlyRateLimited)


class _WaitRetryAfter:
    """Exponential backoff with jitter, but never shorter than the server's ``Retry-After``."""

    def __init__(self, initial: float, maximum: float) -> None:
        self._backoff = wait_exponential(multiplier=initial, max=maximum) + wait_random(0, initial)

    def __call__(self, state: RetryCallState) -> float:
        backoff = self._backoff(state)
        exc = state.outcome.exception() if state.outcome else None
        retry_after = getattr(exc, "retry_after", None)
        if retry_after is not None:
            return max(float(retry_after), 0.0) + min(backoff, 1.0) * 0.1
        return backoff


class RetryPolicy(BaseModel):
    attempts: int = 8
    max_seconds: float = 120.0
    initial_backoff: float = 0.2
    max_backoff: float = 10.0

    def retrying(self, *, idempotent: bool = True) -> Retrying:
        return Retrying(
            retry=retry_if_exception(_is_retryable if idempotent else _is_refused),
            stop=stop_after_attempt(self.attempts) | stop_after_delay(self.max_seconds),
            wait=_WaitRetryAfter(self.initial_backoff, self.max_backoff),
            reraise=True,
            before_sleep=lambda s: log.info(
                "retrying after %s (attempt %d)", type(s.outcome.exception()).__name__, s.attempt_number
            ),
        )


class FlyClient:
    """Machines REST API (``flaps``) and GraphQL. Use as a context manager, or call ``close()``."""

    def __init__(self, connection: FlyConnection, *, retry: RetryPolicy | None = None,
                 timeout: float = 30.0, transport: httpx.BaseTransport | None = None) -> None:
        self._connection = connection
        self.retry = retry or RetryPolicy()
        self._http = httpx.Client(
            timeout=httpx.Timeout(timeout, read=timeout + WAIT_API_MAX_SECONDS),
            headers={"Authorization": connection.authorization(), "User-Agent": "artifact-slices/fly"},
            transport=transport,
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
        for attempt in self.retry.retrying(idempotent=idempotent):
            with attempt:
                return self._send(method, path, **kwargs)
        raise AssertionError("unreachable")  # pragma: no cover

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

    def _create_with_adoption(self, create: Callable[[], M], adopt: Callable[[], M | None]) -> M:
        """Run a non-idempotent create. 429 means Fly refused it before doing anything, so it is simply
        retried; after a 5xx or a lost connection the create may have happened, so first look for what it
        made and adopt that, and only then try again."""
        for attempt in self.retry.retrying():
            with attempt:
                if attempt.retry_state.attempt_number > 1:
                    adopted = adopt()
                    if adopted is not None:
                        log.info("adopted a resource created by an earlier attempt")
                        return adopted
                return create()
        raise AssertionError("unreachable")  # pragma: no cover

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
        """Create an app, or adopt it if an earlier attempt of ours made it (same org)."""
        path = "/v1/apps"
        body: dict[str, Any] = {"name": name, "org_slug": org_slug,
                                "idempotency_key": _secrets.token_hex(16)}
        if network:
            body["network"] = network

        def create() -> App:
            self._send("POST", path, json=body, resource=f"app {name}")
            return self.get_app(name)

        def adopt() -> App | None:
            app = self.find_app(name)
            if app is not None and app.organization is not None and app.organization.slug != org_slug:
                raise FlyNameTaken(status_code=422, method="POST", path=path, resource=f"app {name}",
                                   error=f"app name {name!r} is taken by another organization",
                                   fly_status="name_taken")
            return app

        return self._create_with_adoption(create, adopt)

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
        """Volume names are not unique on Fly, so a retry adopts only a volume of that name that was
        not there before this call."""
        path = f"/v1/apps/{app}/volumes"
        body = {"name": name, "region": region, "size_gb": size_gb, "encrypted": encrypted,
                "require_unique_zone": require_unique_zone}
        before = {v.id for v in self.list_volumes(app)}

        def create() -> Volume:
            response = self._send("POST", path, json=body, resource=f"volume {name} of app {app}")
            return self._parse(Volume, response, "POST", path)

        def adopt() -> Volume | None:
            fresh = [v for v in self.list_volumes(app)
                     if v.id not in before and v.name == name and v.region == region
                     and v.state not in ("destroyed", "destroying", "pending_destroy")]
            return fresh[0] if fresh else None

        return self._create_with_adoption(create, adopt)

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
        path = f"/v1/apps/{app}/machines"
        token = _secrets.token_hex(12)
        config = dict(config)
        config["metadata"] = {**(config.get("metadata") or {}), CREATE_TOKEN_METADATA_KEY: token}
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

        def create() -> Machine:
            response = self._send("POST", path, json=body,
                                  resource=f"machine {name} of app {app}" if name else f"new machine of app {app}")
            return self._parse(Machine, response, "POST", path)

        def adopt() -> Machine | None:
            found = self.list_machines(app, metadata={CREATE_TOKEN_METADATA_KEY: token})
            return found[0] if found else None

        return self._create_with_adoption(create, adopt)

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
                     instance_id: str | None = None, version: str | None = None) -> WaitResult:
        """Block on Fly's wait endpoint until the machine reaches ``state``. The endpoint takes at most
        60 seconds a call, so longer waits are several calls; no sleeping in between."""
        path = f"/v1/apps/{app}/machines/{machine_id}/wait"
        deadline = time.monotonic() + timeout
        while True:
            remaining = max(1, min(WAIT_API_MAX_SECONDS, int(deadline - time.monotonic() + 0.999)))
            params: dict[str, Any] = {"state": state, "timeout": remaining}
            if instance_id and state != "destroyed":
                params["instance_id"] = instance_id
            if version and state != "destroyed":
                params["version"] = version
            try:
                response = self._request("GET", path, idempotent=True, params=params,
                                         resource=f"machine {machine_id} of app {app}")
                return self._parse(WaitResult, response, "GET", path)
            except FlyWaitTimeout:
                if time.monotonic() >= deadline:
                    raise FlyWaitTimeout(status_code=408, method="GET", path=path,
                                         resource=f"machine {machine_id} of app {app}",
                                         error=f"did not reach state {state!r} within {timeout:.0f}s") from None

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
        """An org-scoped (limited access) token. The answer holds the token value: handle as a secret."""
        variables: dict[str, Any] = {"input": {"organizationId": org_id, "name": name, "profile": profile}}
        if expiry:
            variables["input"]["expiry"] = expiry
        data = self.graphql(
            "CreateOrgToken",
            "mutation CreateOrgToken($input: CreateLimitedAccessTokenInput!) { createLimitedAccessToken(input: $input) "
            "{ limitedAccessToken { id name profile expiresAt token } } }",
            variables, idempotent=False)
        return dict(data["createLimitedAccessToken"]["limitedAccessToken"])

    def revoke_org_token(self, token_id: str) -> None:
        self.graphql(
            "RevokeOrgToken",
            "mutation RevokeOrgToken($input: DeleteLimitedAccessTokenInput!) "
            "{ deleteLimitedAccessToken(input: $input) { token } }",
            {"input": {"id": token_id}}, idempotent=True)


def _short(exc: BaseException) -> str:
    text = str(exc).replace("\n", " ")
    return text if len(text) < 400 else text[:400] + "..."
