"""`POST /graphql`: the organisation and limited-access-token subset of Fly's GraphQL API.

Schema: flysim/schema.graphql (names and types copied from flyctl's schema).
Only the server token may create organisations or tokens (Fly's scoped tokens
cannot mint tokens); an org token may read its own organisation and revoke
its own org's tokens.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

from graphql import GraphQLError, GraphQLSchema, build_schema, graphql, parse
from starlette.responses import JSONResponse, Response

from .auth import Principal
from .durations import parse_duration
from .errors import bad_request
from .sim import Ctx, Sim
from .state import Org, Token, rfc3339

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
