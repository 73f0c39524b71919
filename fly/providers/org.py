"""Organizations and org-scoped tokens: the two things only Fly's GraphQL API offers."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from pulumi.dynamic import CheckFailure
from pydantic import Field

from ..errors import FlyError
from .base import FlyProvider, FlyResource, ProviderInputs, ProviderOutputs

if TYPE_CHECKING:  # the program process never needs the HTTP client (nor its import time)
    from ..client import FlyClient

log = logging.getLogger("fly.providers")


class OrganizationInputs(ProviderInputs):
    slug: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    create_if_missing: bool = False
    name: str | None = None


class OrganizationOutputs(ProviderOutputs):
    org_id: str = ""
    org_name: str = ""
    created: bool = False


class OrganizationProvider(FlyProvider[OrganizationInputs, OrganizationOutputs]):
    """Looks an org up by slug, or creates it where asked. Orgs outlive slices: delete forgets it
    (removing an org is a billing decision, not a stack teardown). A slice does not move to another org
    in place (app names are global on Fly and the data volume cannot follow): ``check`` refuses it and
    says how to move."""

    Inputs, Outputs = OrganizationInputs, OrganizationOutputs
    replace_on = frozenset({"slug"})
    adoption = "an org is looked up by slug before it is ever created"
    kind = "organization"

    def extra_checks(self, olds: dict[str, Any], news: dict[str, Any]) -> list[CheckFailure]:
        old, new = olds.get("slug"), news.get("slug")
        if not old or not isinstance(new, str) or old == new:  # check's olds: the inputs of the last up
            return []
        return [CheckFailure("slug", (
            f"organization: this slice lives in org {old!r} and cannot move to {new!r} in place (Fly app names "
            "are global and the NFS volume cannot follow). To move it: `pulumi destroy` this stack (with "
            "artifact-slice:protectVolumes false, after copying the data off), then `pulumi config set "
            f"artifact-slice:org {new}` and `pulumi up`; or set artifact-slice:org back to {old}"))]

    def create_resource(self, client: FlyClient, inputs: OrganizationInputs) -> tuple[str, OrganizationOutputs]:
        org = client.get_organization(inputs.slug)
        created = False
        if org is None:
            if not inputs.create_if_missing:
                raise FlyError(f"organization {inputs.slug!r} does not exist (or the token cannot see it); "
                               "create it, use a token of that org, or set artifact-slice:createOrg true")
            org = client.create_organization(inputs.name or inputs.slug)
            created = True
        return org.id or org.slug, OrganizationOutputs(org_id=org.id or "", org_name=org.name or "", created=created)

    def delete_resource(self, client: FlyClient, id_: str, inputs: OrganizationInputs,
                        state: OrganizationOutputs) -> None:
        log.info("organization kept: orgs are not deleted by a slice teardown")

    def read_resource(self, client: FlyClient, id_: str, inputs: OrganizationInputs,
                      state: OrganizationOutputs) -> OrganizationOutputs | None:
        org = client.get_organization(inputs.slug)
        return None if org is None else state.model_copy(update={"org_id": org.id or "", "org_name": org.name or ""})


class Organization(FlyResource):
    provider = OrganizationProvider


class OrgTokenInputs(ProviderInputs):
    org_id: str = Field(min_length=1)
    name: str = Field(min_length=1, max_length=100)
    profile: str = "deploy_organization"
    expiry: str | None = Field(default=None, pattern=r"^\d+h$", description="hours, e.g. 8760h")


class OrgTokenOutputs(ProviderOutputs):
    token_id: str = ""
    token: str = Field(default="", json_schema_extra={"secret": True})
    expires_at: str = ""


class OrgTokenProvider(FlyProvider[OrgTokenInputs, OrgTokenOutputs]):
    """A limited access token for one org (profile ``deploy_organization``: the narrowest Fly offers
    for a control plane that creates apps and machines in its org). Its value is a secret output;
    delete revokes it."""

    Inputs, Outputs = OrgTokenInputs, OrgTokenOutputs
    replace_on = frozenset({"org_id", "name", "profile", "expiry"})
    # The name identifies the token (see adoption): the old one goes before its replacement is minted.
    delete_before_replace = True
    adoption = ("a token's value exists only in the answer that minted it, so a token of this name that a lost "
                "answer or a crash left behind cannot be adopted: it is revoked before a new one is minted, "
                "and delete revokes every live token of the name, so none outlives the slice")
    kind = "org token"

    def create_resource(self, client: FlyClient, inputs: OrgTokenInputs) -> tuple[str, OrgTokenOutputs]:
        # The look-up for leftovers and the mint go at once (the token is on the NFS volume's critical path,
        # see components/slice.py); whatever the look-up finds besides the new token is revoked after.
        with ThreadPoolExecutor(max_workers=2) as pool:
            listed = pool.submit(client.list_org_tokens, inputs.org_id)
            minted = pool.submit(client.create_org_token, inputs.org_id, inputs.name, expiry=inputs.expiry,
                                 profile=inputs.profile)
            token = minted.result()
            leftovers = listed.result()
        self._revoke_by_name(client, inputs, listed=leftovers, keep=str(token["id"]))
        return str(token["id"]), OrgTokenOutputs(token_id=str(token["id"]), token=token["token"],
                                                 expires_at=token.get("expiresAt") or "")

    @staticmethod
    def _revoke_by_name(client: FlyClient, inputs: OrgTokenInputs, *, listed: list[dict[str, Any]] | None = None,
                        keep: str | None = None) -> None:
        for orphan in client.list_org_tokens(inputs.org_id) if listed is None else listed:
            if orphan.get("name") == inputs.name and str(orphan.get("id")) != keep:
                log.info("revoking token %s (%s) that an earlier, interrupted run minted",
                         orphan.get("id"), inputs.name)
                client.revoke_org_token(str(orphan["id"]))

    def delete_resource(self, client: FlyClient, id_: str, inputs: OrgTokenInputs, state: OrgTokenOutputs) -> None:
        client.revoke_org_token(id_)
        self._revoke_by_name(client, inputs)

    def read_resource(self, client: FlyClient, id_: str, inputs: OrgTokenInputs,
                      state: OrgTokenOutputs) -> OrgTokenOutputs | None:
        live = client.list_org_tokens(inputs.org_id)
        return state if any(str(t.get("id")) == id_ for t in live) else None


class OrgToken(FlyResource):
    provider = OrgTokenProvider
