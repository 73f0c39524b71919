"""Organizations and org-scoped tokens: the two things only Fly's GraphQL API offers."""

from __future__ import annotations

import logging
from typing import Any

import pulumi
from pulumi.dynamic import CreateResult, Resource, UpdateResult
from pydantic import Field

from ..client import FlyClient
from ..errors import FlyError, FlyGraphQLError
from .base import FlyProvider, ProviderInputs
from .connection_args import FlyConnectionArgs

log = logging.getLogger("fly.providers")


class OrganizationInputs(ProviderInputs):
    slug: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    create_if_missing: bool = False
    name: str | None = None


class OrganizationProvider(FlyProvider):
    """Looks an org up by slug, or creates it where asked. Orgs outlive slices: delete forgets it
    (removing an org is a billing decision, not a stack teardown)."""

    inputs_model = OrganizationInputs
    replace_on = frozenset({"slug"})
    kind = "organization"

    def create(self, props: dict[str, Any]) -> CreateResult:
        inputs = OrganizationInputs.model_validate(self.desired(props))
        with self.client(props) as client:
            org = client.get_organization(inputs.slug)
            created = False
            if org is None:
                if not inputs.create_if_missing:
                    raise FlyError(f"organization {inputs.slug!r} does not exist (or the token cannot see it); "
                                   "create it, use a token of that org, or set artifact-slice:createOrg true")
                org = client.create_organization(inputs.name or inputs.slug)
                created = True
        return CreateResult(org.id or org.slug, {**props, "org_id": org.id or "", "org_name": org.name or "",
                                                 "created": created})

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        return UpdateResult({**olds, **news})

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        log.info("organization kept: orgs are not deleted by a slice teardown")

    def read_live(self, client: FlyClient, _id: str, props: dict[str, Any]) -> dict[str, Any] | None:
        org = client.get_organization(props["slug"])
        return None if org is None else {"org_id": org.id or "", "org_name": org.name or ""}


class Organization(Resource):
    org_id: pulumi.Output[str]
    org_name: pulumi.Output[str]
    slug: pulumi.Output[str]

    def __init__(self, resource_name: str, *, slug: str, connection: FlyConnectionArgs,
                 create_if_missing: bool = False, name: str | None = None,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        props = {"slug": slug, "create_if_missing": create_if_missing, "name": name, "org_id": None,
                 "org_name": None, "created": None, **connection.props()}
        super().__init__(OrganizationProvider(), resource_name, props, connection.secret_opts(opts))


class OrgTokenInputs(ProviderInputs):
    org_id: str = Field(min_length=1)
    name: str = Field(min_length=1, max_length=100)
    profile: str = "deploy_organization"
    expiry: str | None = Field(default=None, pattern=r"^\d+h$", description="hours, e.g. 8760h")


class OrgTokenProvider(FlyProvider):
    """A limited access token for one org (profile ``deploy_organization``: the narrowest Fly offers
    for a control plane that creates apps and machines in its org). Its value is an output that the
    resource marks secret; delete revokes it."""

    inputs_model = OrgTokenInputs
    replace_on = frozenset({"org_id", "name", "profile", "expiry"})
    kind = "org token"

    def create(self, props: dict[str, Any]) -> CreateResult:
        inputs = OrgTokenInputs.model_validate(self.desired(props))
        with self.client(props) as client:
            token = client.create_org_token(inputs.org_id, inputs.name, expiry=inputs.expiry,
                                            profile=inputs.profile)
        return CreateResult(str(token["id"]), {**props, "token_id": str(token["id"]), "token": token["token"],
                                               "expires_at": token.get("expiresAt") or ""})

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        return UpdateResult({**olds, **news})

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        with self.client(props) as client:
            try:
                client.revoke_org_token(id_)
            except FlyGraphQLError as exc:
                if not any("not found" in m.lower() for m in exc.messages):
                    raise

    def read_live(self, _client: FlyClient, _id: str, _props: dict[str, Any]) -> dict[str, Any] | None:
        return {}  # GraphQL offers no read of a token's value; keep what we have


class OrgToken(Resource):
    token_id: pulumi.Output[str]
    token: pulumi.Output[str]
    expires_at: pulumi.Output[str]
    name: pulumi.Output[str]

    def __init__(self, resource_name: str, *, org_id: pulumi.Input[str], name: str, connection: FlyConnectionArgs,
                 expiry: str | None = None, opts: pulumi.ResourceOptions | None = None) -> None:
        props = {"org_id": org_id, "name": name, "profile": "deploy_organization", "expiry": expiry,
                 "token_id": None, "token": None, "expires_at": None, **connection.props()}
        secret = pulumi.ResourceOptions(additional_secret_outputs=["token", "fly_token"])
        super().__init__(OrgTokenProvider(), resource_name, props,
                         pulumi.ResourceOptions.merge(connection.secret_opts(opts), secret))
