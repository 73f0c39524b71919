"""The control plane's operations on a slice, shared by the MCP tools and phase 6 of the runbook.

``Infra`` holds one Fly client for the process and the slice's manifest. Every operation validates its
input before any API call, checks the allowlist, and raises ``ControlPlaneError`` (what failed, and the
fix) for anything a person can act on.

A customer app's lifecycle is not here: it is ``components.customer_app.CustomerApp`` (the project's Fly
resource definitions) brought to the requested state by the engine (``controlplane.customers``); this
module only reads (``preflight``: token scope and name, before an engine run).
"""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

from fly import FlyAuthError, FlyClient, FlyConnection, FlyError, FlyNotFound

from .errors import ControlPlaneError, from_fly, token_rejected
from .guard import CUSTOMER_MARKER, Guard
from .manifest import Slice

# How long a look-up that found an app in the slice's org is reused: phase 6 and one tool call ask about
# the same app several times, and Fly limits Apps_show to a burst of 3 per app.
APP_CACHE_SECONDS = 30.0
# How long "no such app" is reused: long enough that concurrent calls for one new customer share one look-up.
ABSENT_CACHE_SECONDS = 5.0


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


class Infra:
    """The slice's control plane operations. One Fly client for the process: use as a context manager."""

    def __init__(self, slice_: Slice, connection: FlyConnection, *, allow_writes: bool = False,
                 client: FlyClient | None = None) -> None:
        self.slice = slice_
        self.guard = Guard(org=slice_.org, prefix=slice_.prefix, allow_writes=allow_writes,
                           slice_apps=[a.name for a in slice_.apps.values()])
        self._connection = connection
        self.fly = client or FlyClient(connection)
        self._apps: dict[str, tuple[float, dict[str, Any] | None]] = {}
        self._token_checked = -APP_CACHE_SECONDS
        self._listing = threading.Lock()
        self._locks_lock = threading.Lock()
        self._finding: dict[str, threading.Lock] = {}

    def __enter__(self) -> Infra:
        return self

    def __exit__(self, *exc: object) -> None:
        self.fly.close()

    @property
    def connection(self) -> FlyConnection:
        return self._connection

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
        with self._listing:  # concurrent calls share one listing of the org (Fly limits it per org)
            if fresh or time.monotonic() - self._token_checked >= APP_CACHE_SECONDS:
                self._list_org()

    def _list_org(self) -> None:
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
        with self._locks_lock:
            lock = self._finding.setdefault(name, threading.Lock())
        with lock:  # concurrent look-ups of one name share one call
            return self._find_app(name)

    def forget(self, name: str) -> None:
        """Drop what is known of an app (after a run that may have made or deleted it)."""
        self._apps.pop(name, None)

    def _find_app(self, name: str) -> dict[str, Any] | None:
        cached = self._apps.get(name)
        if cached is not None and time.monotonic() - cached[0] < (
                APP_CACHE_SECONDS if cached[1] is not None else ABSENT_CACHE_SECONDS):
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
            self._apps[name] = (time.monotonic(), None)
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
                 **({"customer": m.config["metadata"][CUSTOMER_MARKER]}
                    if CUSTOMER_MARKER in (m.config.get("metadata") or {}) else {})}
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

    # -- per-customer apps: reads only (the lifecycle is components.customer_app, run by controlplane.customers) --

    def preflight(self, customer: str, *, nfs: bool = False) -> dict[str, Any]:
        """Before a customer's engine run, from reads only: the token works in the org, and the app name is
        free or an app of the slice's org (never another org's). ``nfs``: the slice's NFS is visible too."""
        name = self.guard.app(self.slice.customer_app(customer))
        self.check_token()
        if nfs:
            app, where = at_once(lambda: self.find_app(name), self.nfs_visible)
        else:
            app, where = self.find_app(name), None
        return {"app": name, "org": self.org, "exists": app is not None, **({"nfs": where} if nfs else {})}
