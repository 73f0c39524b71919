"""`POST /graphql`: the subset of Fly's GraphQL API that flyctl and other clients call.

Schema: flysim/schema.graphql (names and types copied from flyctl's schema).
Organisations and limited-access tokens: only the server token may create
organisations or tokens (Fly's scoped tokens cannot mint tokens); an org token
may read its own organisation and revoke its own org's tokens.
Apps: `app(name:)`, `platform { regions }`, `allocateIpAddress`,
`releaseIpAddress`, `setSecrets`, `unsetSecrets`, on the same state as the REST
API (network.allocate_ip, network.release_ip, secrets_api.apply), with the
same token scopes. As on Fly, `App.id` is the app's name; `internalId` is the
REST API's app id.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from pathlib import Path
from typing import Any

from graphql import GraphQLError, GraphQLSchema, build_schema, graphql, parse
from starlette.responses import JSONResponse, Response

from . import network as network_api
from . import secrets_api
from .auth import Principal
from .durations import parse_duration
from .errors import ApiError, bad_request
from .regions import REGIONS
from .sim import Ctx, Sim
from .state import App, IPAssignment, Org, Token, rfc3339

GRAPHQL_IP_TYPES = {"v4", "v6", "shared_v4", "private_v6"}  # IPAddressType; egress IPs are elsewhere

SCHEMA: GraphQLSchema = build_schema((Path(__file__).with_name("schema.graphql")).read_text())
DEFAULT_TOKEN_EXPIRY = 20 * 365 * 24 * 3600  # flyctl's default for deploy tokens: 20 years
SUPPORTED_PROFILES = {"deploy_organization"}


def _org_obj(sim: Sim, org: Org) -> dict[str, Any]:
    def tokens(info: Any, **_: Any) -> dict[str, Any]:
        principal: Principal = info.context["principal"]
        if principal.kind != "server" and not principal.can_org(org.slug):
            raise GraphQLError("Not authorized to access this organization")
        nodes = [
            _token_obj(sim, t, value=None)
            for t in sim.store.world.tokens.values()
            if t.kind == "org" and t.org_slug == org.slug and not t.revoked
        ]
        return {"nodes": nodes, "totalCount": len(nodes),
                "pageInfo": {"hasNextPage": False, "hasPreviousPage": False}}

    return {
        "id": org.id,
        "internalNumericId": org.internal_numeric_id,
        "name": org.name,
        "rawSlug": org.slug,
        "slug": org.slug,
        "paidPlan": False,
        "trust": "HIGH",
        "type": "PERSONAL" if org.slug == "personal" else "SHARED",
        "viewerRole": "admin",
        "limitedAccessTokens": tokens,
    }


def _token_obj(sim: Sim, tok: Token, value: str | None) -> dict[str, Any]:
    org = sim.store.world.orgs.get(tok.org_slug)
    return {
        "id": tok.id,
        "name": tok.name,
        "profile": "deploy_organization",
        "profileParams": None,
        "createdAt": rfc3339(tok.created_at),
        "expiresAt": rfc3339((tok.expires_at or 0) * 1000),
        "revokedAt": None,
        "revokedBy": None,
        # The value exists only in the create response; listings get a placeholder.
        "token": value if value is not None else "",
        "tokenHeader": f"FlyV1 {value}" if value is not None else None,
        "organization": _org_obj(sim, org) if org else None,
        "user": {"id": "flysim-user", "email": "flysim@example.com", "name": "flysim"},
    }


def _ip_id(ip: IPAssignment) -> str:
    return "ip_" + hashlib.sha256(ip.ip.encode()).hexdigest()[:16]


def _ip_obj(sim: Sim, app: App, ip: IPAssignment) -> dict[str, Any]:
    network = None
    if ip.type == "private_v6" and ip.network:
        org = sim.store.world.orgs.get(app.org_slug)
        network = {"id": f"net_{app.org_slug}_{ip.network}", "name": ip.network,
                   "organization": _org_obj(sim, org) if org else None,
                   "createdAt": rfc3339(ip.created_at), "updatedAt": rfc3339(ip.created_at)}
    return {"id": _ip_id(ip), "address": ip.ip, "type": ip.type, "region": ip.region,
            "serviceName": ip.service_name, "createdAt": rfc3339(ip.created_at), "network": network}


def _app_obj(sim: Sim, app: App) -> dict[str, Any]:
    deployed = any(m.state == "started" for m in app.machines.values())
    org = sim.store.world.orgs.get(app.org_slug)

    def ips() -> list[IPAssignment]:
        return [ip for ip in app.ips if ip.type in GRAPHQL_IP_TYPES]

    def ip_addresses(info: Any, **_: Any) -> dict[str, Any]:
        nodes = [_ip_obj(sim, app, ip) for ip in ips()]
        return {"nodes": nodes, "edges": [{"cursor": n["id"], "node": n} for n in nodes], "totalCount": len(nodes),
                "pageInfo": {"hasNextPage": False, "hasPreviousPage": False}}

    def ip_address(info: Any, address: str) -> dict[str, Any] | None:
        return next((_ip_obj(sim, app, ip) for ip in ips() if ip.ip == address), None)

    return {
        "id": app.name,
        "internalId": app.id,
        "internalNumericId": app.internal_numeric_id,
        "key": app.name,
        "name": app.name,
        "hostname": f"{app.name}.fly.dev",
        "appUrl": f"https://{app.name}.fly.dev",
        "createdAt": rfc3339(app.created_at),
        "deployed": deployed,
        "status": "deployed" if deployed else "pending",
        "state": "DEPLOYED" if deployed else "PENDING",
        "network": app.network or "default",
        "organization": _org_obj(sim, org) if org else None,
        "secrets": [{"id": f"sec_{app.id}_{name}", "name": name, "digest": sec.digest,
                     "createdAt": rfc3339(sec.created_at), "user": None}
                    for name, sec in sorted(app.secrets.items())],
        "sharedIpAddress": next((ip.ip for ip in app.ips if ip.type == "shared_v4"), None),
        "ipAddresses": ip_addresses,
        "ipAddress": ip_address,
    }


def _api_errors(fn: Any) -> Any:
    """A REST-layer ApiError (bad input) becomes a GraphQL error with the same message."""

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ApiError as err:
            raise GraphQLError(err.message) from None

    wrapper.__name__ = fn.__name__
    return wrapper


def _slugify(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


class Resolvers:
    def __init__(self, sim: Sim, principal: Principal) -> None:
        self.sim = sim
        self.principal = principal

    def organization(self, info: Any, id: str | None = None, name: str | None = None, slug: str | None = None) -> Any:
        orgs = self.sim.store.world.orgs.values()
        org = next(
            (o for o in orgs if (id and o.id == id) or (slug and o.slug == slug) or (name and o.name == name)),
            None,
        )
        if org is None or not self.principal.can_org(org.slug):
            # Same answer for "missing" and "not yours": no existence leak.
            raise GraphQLError("Could not find Organization")
        return _org_obj(self.sim, org)

    # -- apps, platform, IPs, secrets --------------------------------------------------------
    def _find_app(self, ident: str | None) -> App:
        """An app by name or REST id; missing and out-of-scope give the same answer (no existence leak)."""
        apps = self.sim.store.world.apps
        app = apps.get(ident or "") or next((a for a in apps.values() if a.id == ident), None)
        if app is None or not self.principal.can_app(app):
            raise GraphQLError("Could not find App")
        return app

    def app(self, info: Any, id: str | None = None, internalId: str | None = None, key: str | None = None,
            name: str | None = None) -> Any:
        return _app_obj(self.sim, self._find_app(name or id or key or internalId))

    def platform(self, info: Any) -> Any:
        regions = [{"code": code, "name": name, "gatewayAvailable": gateway, "deprecated": False,
                    "requiresPaidPlan": False, "latitude": None, "longitude": None, "processGroup": None}
                   for code, name, gateway in REGIONS]
        return {"regions": regions, "requestRegion": "iad"}

    @_api_errors
    def allocateIpAddress(self, info: Any, input: dict[str, Any]) -> Any:
        app = self._find_app(input["appId"])
        org_id = input.get("organizationId")
        org = self.sim.store.world.orgs.get(app.org_slug)
        if org_id and (org is None or org_id != org.id):
            raise GraphQLError("Could not find Organization")
        ip = network_api.allocate_ip(app, input["type"], region=input.get("region"), network=input.get("network"),
                                     service_name=input.get("serviceName"))
        self.sim.persist()
        return {"clientMutationId": input.get("clientMutationId"), "app": _app_obj(self.sim, app),
                "ipAddress": _ip_obj(self.sim, app, ip)}

    def releaseIpAddress(self, info: Any, input: dict[str, Any]) -> Any:
        ip_id, address = input.get("ipAddressId"), input.get("ip")
        if input.get("appId"):
            candidates = [self._find_app(input["appId"])]
        elif ip_id:
            candidates = [a for a in self.sim.store.world.apps.values() if self.principal.can_app(a)]
        else:
            raise GraphQLError("appId and ip, or ipAddressId, are required")
        for app in candidates:
            for ip in app.ips:
                if (ip_id and _ip_id(ip) == ip_id) or (address and ip.ip == address):
                    network_api.release_ip(app, ip.ip)
                    self.sim.persist()
                    return {"clientMutationId": input.get("clientMutationId"), "app": _app_obj(self.sim, app)}
        raise GraphQLError("Could not find IPAddress")

    @_api_errors
    def setSecrets(self, info: Any, input: dict[str, Any]) -> Any:
        app = self._find_app(input["appId"])
        values: dict[str, str | None] = {}
        if input.get("replaceAll"):
            values = {name: None for name in app.secrets}
        for secret in input["secrets"]:
            values[secret["key"]] = secret["value"]
        secrets_api.apply(app, values)
        self.sim.persist()
        # Machines apps get no release from a secrets change (flyctl deploys them itself).
        return {"clientMutationId": input.get("clientMutationId"), "app": _app_obj(self.sim, app), "release": None}

    @_api_errors
    def unsetSecrets(self, info: Any, input: dict[str, Any]) -> Any:
        app = self._find_app(input["appId"])
        secrets_api.apply(app, {key: None for key in input["keys"]})
        self.sim.persist()
        return {"clientMutationId": input.get("clientMutationId"), "app": _app_obj(self.sim, app), "release": None}

    def createOrganization(self, info: Any, input: dict[str, Any]) -> Any:
        if self.principal.kind != "server":
            raise GraphQLError("Not authorized to create organizations")
        name = input["name"].strip()
        slug = _slugify(name)
        if not slug:
            raise GraphQLError("Name is invalid")
        world = self.sim.store.world
        if slug in world.orgs:
            raise GraphQLError("Name has already been taken")
        org = self.sim.store.ensure_org(slug, name=name)
        tok, value = self.sim.auth.issue(
            kind="org", name=f"{slug} org token", org_slug=slug, expires_at=int(time.time()) + DEFAULT_TOKEN_EXPIRY
        )
        self.sim.persist()
        return {"clientMutationId": input.get("clientMutationId"), "organization": _org_obj(self.sim, org), "token": value}

    def createLimitedAccessToken(self, info: Any, input: dict[str, Any]) -> Any:
        if self.principal.kind != "server":
            raise GraphQLError("Not authorized to create tokens")
        if input["profile"] not in SUPPORTED_PROFILES:
            raise GraphQLError(f"unsupported profile {input['profile']!r} (flysim supports: deploy_organization)")
        org = next((o for o in self.sim.store.world.orgs.values() if o.id == input["organizationId"]), None)
        if org is None:
            raise GraphQLError("Could not find Organization")
        expiry = DEFAULT_TOKEN_EXPIRY
        if input.get("expiry"):
            try:
                expiry = int(parse_duration(input["expiry"]))
            except ValueError as exc:
                raise GraphQLError(str(exc)) from None
            if expiry <= 0:
                raise GraphQLError("expiry must be positive")
        tok, value = self.sim.auth.issue(
            kind="org", name=input["name"], org_slug=org.slug, expires_at=int(time.time()) + expiry
        )
        self.sim.persist()
        return {"clientMutationId": input.get("clientMutationId"), "limitedAccessToken": _token_obj(self.sim, tok, value)}

    def deleteLimitedAccessToken(self, info: Any, input: dict[str, Any]) -> Any:
        if not input.get("id") and not input.get("token"):
            raise GraphQLError("id or token is required")
        tok = self.sim.auth.find(token_id=input.get("id"), value=input.get("token"))
        if tok is None or not self.principal.can_org(tok.org_slug):
            raise GraphQLError("Could not find LimitedAccessToken")
        tok.revoked = True
        self.sim.persist()
        return {"clientMutationId": input.get("clientMutationId"), "revokedBy": input.get("revokedBy"), "token": tok.id}


def _resolve_field(source: Any, info: Any, **args: Any) -> Any:
    """Root fields go to Resolvers; others read dict keys (callables get args)."""
    if source is None or isinstance(source, Resolvers):
        return getattr(info.context["resolvers"], info.field_name)(info, **args)
    value = source.get(info.field_name) if isinstance(source, dict) else getattr(source, info.field_name, None)
    return value(info, **args) if callable(value) else value


def top_level_fields(raw: bytes) -> frozenset[str]:
    """The top-level fields a GraphQL request selects (what a `graphql_field` fault matches); none for a
    body that isn't a GraphQL document (the handler answers that)."""
    try:
        query = json.loads(raw).get("query")
        document = parse(query) if isinstance(query, str) else None
    except (ValueError, AttributeError, GraphQLError):
        return frozenset()
    if document is None:
        return frozenset()
    return frozenset(selection.name.value for definition in document.definitions
                     for selection in getattr(getattr(definition, "selection_set", None), "selections", ())
                     if hasattr(selection, "name"))


async def graphql_handler(ctx: Ctx) -> Response:
    body = await ctx.body()
    query = body.get("query")
    if not isinstance(query, str):
        raise bad_request("query is required")
    try:  # recorded in the call log: a query reads, a mutation writes
        kinds = {d.operation.value for d in parse(query).definitions if hasattr(d, "operation")}
        ctx.request.scope["flysim.graphql_operation"] = "mutation" if "mutation" in kinds else "query"
    except GraphQLError:
        pass
    principal = ctx.require_principal()
    resolvers = Resolvers(ctx.sim, principal)
    result = await graphql(
        SCHEMA,
        query,
        root_value=resolvers,
        context_value={"principal": principal, "resolvers": resolvers},
        variable_values=body.get("variables") or None,
        operation_name=body.get("operationName"),
        field_resolver=_resolve_field,
    )
    out: dict[str, Any] = {"data": result.data}
    if result.errors:
        out["errors"] = [e.formatted for e in result.errors]
    return JSONResponse(out)
