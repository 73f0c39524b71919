"""The control plane's operations on a slice, shared by the MCP tools and phase 6 of the runbook.

``Infra`` holds one Fly client for the process and the slice's manifest. Every operation validates its
input before any API call, checks the allowlist, and raises ``ControlPlaneError`` (what failed, and the
fix) for anything a person can act on.

Per-customer apps (``ensure_app``) follow the runbook's steps: create the app, set its secrets, create
its volume, create its machine from the agent image (the worker pool's template, with the customer's
env, CPU kind and count, memory, auto stop and start), and wait on the wait endpoint until it runs.
What exists is adopted: a second identical call makes no mutating call. The machine carries a hash of
the configuration it was made from (and an HMAC of the secrets, keyed with the org token, so no secret
can be read back from it), which is how "identical" is decided without reading secrets.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import os
import re
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator

from fly import FlyAuthError, FlyClient, FlyConnection, FlyError, FlyNotFound
from fly.appconfig.machines import MEMORY_MB_PER_CPU
from fly.appconfig.schema import PRESETS
from fly.regions import FlyRegion

from .errors import ControlPlaneError, from_fly, token_rejected
from .guard import Guard
from .manifest import Slice

# Fly's machine sizes, as fly-go knows them: the CPU counts of its presets, memory per CPU by kind.
CPU_COUNTS = {kind: tuple(sorted({p["cpus"] for p in PRESETS.values() if p["cpu_kind"] == kind and "gpu_kind" not in p}))
              for kind in ("shared", "performance")}
CUSTOMER_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?$")
ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
VOLUME_NAME = "data"
VOLUME_PATH = "/data"
CUSTOMER_KEY, CONFIG_KEY, SECRETS_KEY = "artifact_customer", "artifact_config", "artifact_secrets"
WAIT_SECONDS = 120.0
# How long a look-up that found an app in the slice's org is reused: phase 6 and one tool call ask about
# the same app several times, and Fly limits Apps_show to a burst of 3 per app.
APP_CACHE_SECONDS = 30.0


class AppSpec(BaseModel):
    """The inputs of ``ensure_app``; validated before any API call."""

    model_config = ConfigDict(extra="forbid")

    customer: str = Field(description="customer id: lowercase letters, digits and dashes; the app is "
                                      "<slice>-cust-<customer>")
    region: FlyRegion = Field(description="three-letter Fly region")
    image: str = Field(min_length=1, description="the agent image")
    env: dict[str, str] = Field(default_factory=dict)
    secrets: dict[str, SecretStr] = Field(default_factory=dict)
    cpu_kind: Literal["shared", "performance"] = "shared"
    cpus: int = 1
    memory_mb: int = 256
    auto_stop: Literal["off", "stop", "suspend"] = "suspend"
    auto_start: bool = True
    volume_size_gb: int = Field(default=1, ge=0, le=500, description="0: no volume")

    @field_validator("customer")
    @classmethod
    def _customer(cls, value: str) -> str:
        if not CUSTOMER_RE.match(value):
            raise ValueError("must be lowercase letters, digits and dashes, starting and ending with a letter "
                             "or digit (e.g. 'acme-1')")
        return value

    @field_validator("env", "secrets")
    @classmethod
    def _names(cls, value: dict[str, Any]) -> dict[str, Any]:
        bad = [k for k in value if not ENV_NAME_RE.match(k)]
        if bad:
            raise ValueError(f"{', '.join(map(repr, bad))}: not a valid environment variable name")
        return value

    @model_validator(mode="after")
    def _size(self) -> AppSpec:
        counts = CPU_COUNTS[self.cpu_kind]
        if self.cpus not in counts:
            raise ValueError(f"cpus={self.cpus} is not a {self.cpu_kind} size; use one of {counts}")
        lo, hi = (self.cpus * m for m in MEMORY_MB_PER_CPU[self.cpu_kind])
        if not lo <= self.memory_mb <= hi or self.memory_mb % 256:
            raise ValueError(f"memory_mb={self.memory_mb} does not fit {self.cpus} {self.cpu_kind} CPU(s): use a "
                             f"multiple of 256 from {lo} to {hi}")
        return self


def parse_spec(values: dict[str, Any]) -> AppSpec:
    try:
        return AppSpec.model_validate(values)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'input'}: {e['msg'].removeprefix('Value error, ')}"
                             for e in exc.errors(include_input=False))
        raise ControlPlaneError(f"invalid input: {problems}", "correct the named argument(s) and call again") from None


def connection_for(slice_: Slice, token: str | None = None) -> FlyConnection:
    """The slice's Fly endpoints (from its manifest, else the environment, as flyctl reads them) with
    the org token: ``token``, else ``FLY_ORG_TOKEN``."""
    token = token or os.environ.get("FLY_ORG_TOKEN")
    if not token:
        raise ControlPlaneError("no org token: FLY_ORG_TOKEN is not set",
                                "set FLY_ORG_TOKEN to the slice's control plane token "
                                "(`pulumi stack output --show-secrets controlPlaneToken`)")
    try:
        return FlyConnection.resolve(token=token, api_base_url=slice_.fly.api_base_url or None,
                                     flaps_base_url=slice_.fly.flaps_base_url or None)
    except FlyError as exc:
        raise ControlPlaneError(str(exc), "correct the manifest's fly endpoints or FLY_API_BASE_URL") from None


# Reads in flight at once: a slice's apps and a few more, well under Fly's per-action limits (each read
# names another app or machine).
MAX_PARALLEL_READS = 16


def at_once(*reads: Callable[[], Any]) -> list[Any]:
    """Independent reads in parallel (one round trip for all, not one each); the first one's error, in the
    given order, is the one raised."""
    if len(reads) == 1:
        return [reads[0]()]
    with ThreadPoolExecutor(max_workers=max(1, min(len(reads), MAX_PARALLEL_READS))) as pool:
        futures = [pool.submit(read) for read in reads]
    return [f.result() for f in futures]


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:24]


class Infra:
    """The slice's control plane operations. One Fly client for the process: use as a context manager."""

    def __init__(self, slice_: Slice, connection: FlyConnection, *, allow_writes: bool = False,
                 client: FlyClient | None = None) -> None:
        self.slice = slice_
        self.guard = Guard(org=slice_.org, prefix=slice_.prefix, allow_writes=allow_writes,
                           slice_apps=[a.name for a in slice_.apps.values()])
        self._connection = connection
        self.fly = client or FlyClient(connection)
        self._apps: dict[str, tuple[float, dict[str, Any]]] = {}
        self._token_checked = -APP_CACHE_SECONDS

    def __enter__(self) -> Infra:
        return self

    def __exit__(self, *exc: object) -> None:
        self.fly.close()

    @property
    def org(self) -> str:
        return self.slice.org

    def _fly(self, doing: str, call: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return call(*args, **kwargs)
        except FlyError as exc:
            raise from_fly(exc, doing, org=self.org) from None

    # -- reads -------------------------------------------------------------------------------------------

    def manifest(self) -> dict[str, Any]:
        return self.slice.document

    def check_token(self, *, fresh: bool = False) -> None:
        """The token works and its scope covers the slice's org (one read, reused for a while: any later
        call that Fly refuses for the token says so too)."""
        if not fresh and time.monotonic() - self._token_checked < APP_CACHE_SECONDS:
            return
        try:
            listed = self.fly.list_apps(self.org)
        except FlyAuthError:
            raise token_rejected(self.org) from None
        except FlyNotFound:
            raise ControlPlaneError(f"Fly does not know org {self.org!r} (from the slice manifest)",
                                    "check the manifest's org.slug; the slice's org must exist") from None
        except FlyError as exc:
            raise from_fly(exc, f"list the apps of org {self.org}", org=self.org) from None
        self._token_checked = now = time.monotonic()
        # The listing is of the org's apps: each of them is known to exist there, without a look-up each.
        for app in listed:
            self._apps[app.name] = (now, {"name": app.name, "id": app.id, "org": self.org, "status": app.status})

    def find_app(self, name: str) -> dict[str, Any] | None:
        """The app if it exists in the slice's org; None if it does not exist. An app of another org is
        refused (and so is a name the token cannot see, once the token is known to work)."""
        self.guard.app(name)
        cached = self._apps.get(name)
        if cached is not None and time.monotonic() - cached[0] < APP_CACHE_SECONDS:
            return cached[1]
        try:
            app = self.fly.find_app(name)
        except FlyAuthError:
            self.check_token(fresh=True)  # a rejected token says so; otherwise the name is another org's
            raise ControlPlaneError(f"app name {name} is taken by another organization (the org token of "
                                    f"{self.org} cannot see it)",
                                    "app names are global on Fly: choose another customer name") from None
        except FlyError as exc:
            raise from_fly(exc, f"look up app {name}", org=self.org) from None
        if app is None:
            return None
        org = app.organization.slug if app.organization else None
        self.guard.org_of(name, org)
        found = {"name": app.name, "id": app.id, "org": org or self.org, "status": app.status}
        self._apps[name] = (time.monotonic(), found)
        return found

    def list_machines(self, app: str) -> list[dict[str, Any]]:
        if self.find_app(app) is None:
            raise ControlPlaneError(f"app {app} does not exist in org {self.org}",
                                    "check the name (infra_manifest lists the slice's apps)")
        machines = self._fly(f"list the machines of {app}", self.fly.list_machines, app)
        return [{"id": m.id, "name": m.name, "state": m.state, "region": m.region,
                 "image": m.config.get("image"), "updated_at": m.updated_at,
                 **({"customer": m.config["metadata"][CUSTOMER_KEY]}
                    if CUSTOMER_KEY in (m.config.get("metadata") or {}) else {})}
                for m in machines if m.state != "destroyed"]

    def private_addresses(self, app: str) -> list[str]:
        self.guard.app(app)
        ips = self._fly(f"list the IPs of {app}", self.fly.list_ips, app)
        return [ip.ip for ip in ips if ip.ip.startswith("fdaa:")]

    def nfs_visible(self) -> str:
        """The slice's NFS server is reachable from a customer app: its app is in the org, with a
        private (Flycast) address on the org's network, and its machine is started."""
        nfs = self.slice.apps.get("nfs")
        if nfs is None:
            raise ControlPlaneError("the slice manifest has no nfs app", "pass the manifest of a complete slice")
        if self.find_app(nfs.name) is None:
            raise ControlPlaneError(f"NFS app {nfs.name} does not exist in org {self.org}",
                                    "run `pulumi up` of the slice to recreate it")
        addresses, machines = at_once(lambda: self.private_addresses(nfs.name), lambda: self.list_machines(nfs.name))
        if not addresses:
            raise ControlPlaneError(f"NFS app {nfs.name} has no private IPv6, so {nfs.name}.flycast does not resolve",
                                    "run `pulumi up` of the slice (it allocates the Flycast address)")
        started = [m for m in machines if m["state"] == "started"]
        if not started:
            raise ControlPlaneError(f"NFS app {nfs.name} has no started machine",
                                    f"start it (`fly machine start -a {nfs.name}`) or run `pulumi up`")
        return f"{nfs.name}.flycast ({addresses[0]})"

    # -- per-customer apps ---------------------------------------------------------------------------------

    def spec(self, customer: str, **values: Any) -> AppSpec:
        """An ``AppSpec`` with the slice's defaults (region, agent image) for what is not given."""
        given = {k: v for k, v in values.items() if v is not None}
        given.setdefault("region", self.slice.region)
        given.setdefault("image", self.slice.agent_image)
        return parse_spec({"customer": customer, **given})

    def _machine_config(self, spec: AppSpec, volume_id: str | None) -> tuple[dict[str, Any], str]:
        config = copy.deepcopy(self.slice.agent_template)
        config.pop("mounts", None)
        config["image"] = spec.image
        config["env"] = {**(config.get("env") or {}), "PRIMARY_REGION": spec.region,
                         "ARTIFACT_CUSTOMER": spec.customer, **spec.env}
        config["guest"] = {"cpu_kind": spec.cpu_kind, "cpus": spec.cpus, "memory_mb": spec.memory_mb}
        services = config.get("services") or [{"protocol": "tcp", "internal_port": 8080, "min_machines_running": 0,
                                               "ports": [{"port": 80, "handlers": ["http"], "force_https": True},
                                                         {"port": 443, "handlers": ["tls", "http"]}]}]
        config["services"] = [{**s, "autostop": spec.auto_stop, "autostart": spec.auto_start} for s in services]
        if spec.volume_size_gb:
            config["mounts"] = [{"volume": volume_id or "<new volume>", "path": VOLUME_PATH, "name": VOLUME_NAME}]
        secrets_hmac = hmac.new(self._connection.token.get_secret_value().encode(),
                                json.dumps({k: v.get_secret_value() for k, v in spec.secrets.items()},
                                           sort_keys=True).encode(), hashlib.sha256).hexdigest()[:24]
        # The hash covers everything but the volume id (a new volume is not a new configuration).
        digest = _digest({**config, "mounts": [{**m, "volume": ""} for m in config.get("mounts", [])],
                          "secrets": secrets_hmac, "volume_size_gb": spec.volume_size_gb})
        config["metadata"] = {**(config.get("metadata") or {}), CUSTOMER_KEY: spec.customer, CONFIG_KEY: digest,
                              SECRETS_KEY: secrets_hmac}
        return config, digest

    def plan_app(self, spec: AppSpec) -> dict[str, Any]:
        """What ``ensure_app`` would do, from reads only: the token works in the org, the name is free
        (or already this customer's app), the slice's NFS is visible; then each step's action."""
        name = self.guard.app(self.slice.customer_app(spec.customer))
        self.check_token()
        app, nfs = at_once(lambda: self.find_app(name), self.nfs_visible)
        steps: list[dict[str, Any]] = [{"step": "app", "target": name, "org": self.org,
                                        "action": "exists" if app else "create"}]
        volume = machine = None
        secret_names: set[str] = set()
        if app is not None:
            secret_names = set(self._fly(f"list the secrets of {name}", self.fly.list_secret_names, name))
            if spec.volume_size_gb:
                volume = next((v for v in self._fly(f"list the volumes of {name}", self.fly.list_volumes, name)
                               if v.name == VOLUME_NAME and v.region == spec.region
                               and v.state not in ("destroyed", "destroying", "pending_destroy")), None)
            mine = [m for m in self._fly(f"list the machines of {name}", self.fly.list_machines, name)
                    if m.state != "destroyed" and (m.config.get("metadata") or {}).get(CUSTOMER_KEY) == spec.customer]
            machine = mine[0] if mine else None
        config, digest = self._machine_config(spec, volume.id if volume else None)
        live_meta = (machine.config.get("metadata") or {}) if machine else {}
        secrets_same = secret_names == set(spec.secrets) and (
            not spec.secrets or live_meta.get(SECRETS_KEY) == config["metadata"][SECRETS_KEY])
        steps.append({"step": "secrets", "names": sorted(spec.secrets), "action": "unchanged" if secrets_same else "set",
                      **({"unset": sorted(secret_names - set(spec.secrets))} if secret_names - set(spec.secrets) else {})})
        if spec.volume_size_gb:
            steps.append({"step": "volume", "name": VOLUME_NAME, "region": spec.region, "size_gb": spec.volume_size_gb,
                          "action": "exists" if volume else "create", **({"id": volume.id} if volume else {})})
        if machine is None:
            machine_action = "create"
        elif live_meta.get(CONFIG_KEY) == digest and (volume is not None or not spec.volume_size_gb):
            # Stopped or suspended is what auto stop does; created (never started) or failed needs a start.
            machine_action = "start" if machine.state in ("created", "failed") else "unchanged"
        else:
            machine_action = "update"
        steps.append({"step": "machine", "image": spec.image, "region": spec.region,
                      "guest": config["guest"], "auto_stop": spec.auto_stop, "auto_start": spec.auto_start,
                      "action": machine_action, **({"id": machine.id, "state": machine.state} if machine else {})})
        if machine_action != "unchanged":
            steps.append({"step": "wait", "state": "started", "action": "wait"})
        return {"app": name, "org": self.org, "nfs": nfs, "steps": steps,
                "changes": sum(s["action"] in ("create", "set", "update", "start") for s in steps),
                "_live": {"app": app, "volume": volume, "machine": machine, "secret_names": secret_names}}

    def ensure_app(self, spec: AppSpec, *, dry_run: bool = False) -> dict[str, Any]:
        plan = self.plan_app(spec)
        live = plan.pop("_live")
        if dry_run or not plan["changes"]:
            return {**plan, "dry_run": dry_run, "applied": False}
        self.guard.write("infra_ensure_app")
        name = plan["app"]
        if live["app"] is None:
            self._fly(f"create app {name} in org {self.org}", self.fly.create_app, name, self.org)
        secrets_version = None
        if any(s["step"] == "secrets" and s["action"] == "set" for s in plan["steps"]):
            # Exactly the secrets asked for: new values set, names no longer asked for unset.
            values: dict[str, str | None] = {k: None for k in live["secret_names"] - set(spec.secrets)}
            values.update({k: v.get_secret_value() for k, v in spec.secrets.items()})
            secrets_version = self._fly(f"set the secrets of {name}", self.fly.set_secrets, name, values)
        volume = live["volume"]
        if spec.volume_size_gb and volume is None:
            volume = self._fly(f"create volume {VOLUME_NAME} of {name}", self.fly.create_volume, name,
                               name=VOLUME_NAME, region=spec.region, size_gb=spec.volume_size_gb)
        config, _ = self._machine_config(spec, volume.id if volume else None)
        machine = live["machine"]
        action = next(s["action"] for s in plan["steps"] if s["step"] == "machine")
        if action == "create":
            machine = self._fly(f"create the machine of {name}", self.fly.create_machine, name, config,
                                region=spec.region, min_secrets_version=secrets_version)
        elif action == "update":
            with self.fly.lease(name, machine.id, description="artifact control plane: ensure_app") as lease:
                machine = self._fly(f"update machine {machine.id} of {name}", self.fly.update_machine, name,
                                    machine.id, config, lease_nonce=lease.nonce,
                                    current_version=machine.current_version, min_secrets_version=secrets_version)
        elif action == "start":
            self._fly(f"start machine {machine.id} of {name}", self.fly.start_machine, name, machine.id)
        self._fly(f"wait for machine {machine.id} of {name} to start", self.fly.wait_machine, name, machine.id,
                  "started", timeout=WAIT_SECONDS, instance_id=machine.instance_id if action != "start" else None)
        return {**plan, "dry_run": False, "applied": True, "machine": {"id": machine.id, "state": "started"},
                **({"volume": {"id": volume.id}} if volume else {})}

    def destroy_app(self, customer: str) -> dict[str, Any]:
        """The runbook's teardown of one customer app: machines, then volumes once detached, then the app."""
        if not isinstance(customer, str) or not CUSTOMER_RE.match(customer):
            raise ControlPlaneError(f"invalid input: customer {customer!r} is not a customer id",
                                    "use lowercase letters, digits and dashes")
        name = self.guard.app(self.slice.customer_app(customer))
        if self.find_app(name) is None:
            return {"app": name, "destroyed": False, "detail": "no such app (already destroyed)"}
        self.guard.write("infra_destroy_app")
        self._apps.pop(name, None)
        machines = [m for m in self._fly(f"list the machines of {name}", self.fly.list_machines, name)
                    if m.state != "destroyed"]
        self.guard.customer_marker(name, customer, machines)
        for m in machines:
            self._fly(f"destroy machine {m.id} of {name}", self.fly.delete_machine, name, m.id, force=True)
        for m in machines:
            self._fly(f"wait for machine {m.id} of {name} to be destroyed", self.fly.wait_machine, name, m.id,
                      "destroyed", timeout=WAIT_SECONDS)
        volumes = [v for v in self._fly(f"list the volumes of {name}", self.fly.list_volumes, name)
                   if v.state not in ("destroyed", "destroying", "pending_destroy")]
        for v in volumes:
            if v.attached_machine_id:
                raise ControlPlaneError(f"volume {v.id} of {name} is still attached to machine {v.attached_machine_id}",
                                        "call infra_destroy_app again once the machine is destroyed")
            self._fly(f"delete volume {v.id} of {name}", self.fly.delete_volume, name, v.id)
        self._fly(f"delete app {name}", self.fly.delete_app, name)
        return {"app": name, "destroyed": True, "machines": [m.id for m in machines], "volumes": [v.id for v in volumes]}
