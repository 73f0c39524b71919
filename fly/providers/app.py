"""A Fly app: ``name`` in ``org_slug``. The id is the app name (what every other call takes)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pulumi.dynamic import DiffResult, UpdateResult
from pydantic import Field

from ..errors import FlyNameTaken
from .base import FlyProvider, FlyResource, ProviderInputs, ProviderOutputs

if TYPE_CHECKING:  # the program process never needs the HTTP client (nor its import time)
    from ..client import FlyClient

APP_NAME_PATTERN = r"^[a-z0-9][a-z0-9-]{0,61}[a-z0-9]$"


class AppInputs(ProviderInputs):
    name: str = Field(pattern=APP_NAME_PATTERN, description="lowercase letters, digits and dashes, 2-63 chars")
    org_slug: str = Field(min_length=1)
    network: str | None = None
    # Names the app had in earlier versions of the program: Fly cannot rename an app, so an app made under
    # one of them keeps it (and its machines, addresses and history) instead of being replaced by a new app
    # of the new name. Only a new app (a new stack, or a replace for another reason) takes ``name``.
    former_names: list[str] = Field(default_factory=list)


class AppOutputs(ProviderOutputs):
    app_id: str = ""
    status: str = ""


class AppProvider(FlyProvider[AppInputs, AppOutputs]):
    Inputs, Outputs = AppInputs, AppOutputs
    replace_on = frozenset({"name", "org_slug", "network"})
    delete_before_replace = True  # app names are global: the new one needs the old one's name
    adoption = ("an app of this name in this org is ours: Fly answers a repeated create (same idempotency key) "
                "with the app it made, and an app of the name made otherwise in the org is adopted; one in "
                "another org is someone else's and stays an error")
    kind = "app"
    settings_only = frozenset({"former_names"})

    def diff(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        """An app under one of its ``former_names`` is the app ``name`` asks for: no replace for the name."""
        result = super().diff(id_, olds, news)
        if "name" in (result.replaces or []) and olds.get("name") in (news.get("former_names") or []):
            replaces = [k for k in result.replaces if k != "name"]
            stables = [*(result.stables or []), "name"]
            return DiffResult(changes=bool(replaces), replaces=replaces, stables=stables,
                              delete_before_replace=self.delete_before_replace if replaces else None)
        return result

    def update(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        # Nothing of an app changes in place; what an update records keeps the name the app really has.
        return UpdateResult({**news, "name": olds.get("name", news.get("name")),
                             **{k: olds[k] for k in ("app_id", "status") if k in olds}})

    def create_resource(self, client: FlyClient, inputs: AppInputs) -> tuple[str, AppOutputs]:
        try:
            app = client.create_app(inputs.name, inputs.org_slug, network=inputs.network)
        except FlyNameTaken:
            app = client.find_app(inputs.name)
            if app is None or app.organization is None or app.organization.slug != inputs.org_slug:
                raise
        return inputs.name, AppOutputs(app_id=app.id or app.name, status=app.status or "")

    def delete_resource(self, client: FlyClient, id_: str, inputs: AppInputs, state: AppOutputs) -> None:
        client.delete_app(id_)

    def read_resource(self, client: FlyClient, id_: str, inputs: AppInputs, state: AppOutputs) -> AppOutputs | None:
        app = client.find_app(id_)
        return None if app is None else AppOutputs(app_id=app.id or app.name, status=app.status or "")


class App(FlyResource):
    """A Fly app."""

    provider = AppProvider
