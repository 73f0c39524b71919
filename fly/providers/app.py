"""A Fly app: ``name`` in ``org_slug``. The id is the app name (what every other call takes)."""

from __future__ import annotations

import logging
from typing import Any

import pulumi
from pulumi.dynamic import CreateResult, Resource, UpdateResult
from pydantic import Field

from ..client import FlyClient
from ..errors import FlyNameTaken
from .base import FlyProvider, ProviderInputs
from .connection_args import FlyConnectionArgs

log = logging.getLogger("fly.providers")

APP_NAME_PATTERN = r"^[a-z0-9][a-z0-9-]{0,61}[a-z0-9]$"


class AppInputs(ProviderInputs):
    name: str = Field(pattern=APP_NAME_PATTERN, description="lowercase letters, digits and dashes, 2-63 chars")
    org_slug: str = Field(min_length=1)
    network: str | None = None


class AppProvider(FlyProvider):
    inputs_model = AppInputs
    replace_on = frozenset({"name", "org_slug", "network"})
    delete_before_replace = True  # app names are global: the new one needs the old one's name
    kind = "app"

    def create(self, props: dict[str, Any]) -> CreateResult:
        inputs = AppInputs.model_validate(self.desired(props))
        with self.client(props) as client:
            try:
                app = client.create_app(inputs.name, inputs.org_slug, network=inputs.network)
            except FlyNameTaken:
                # A rerun after a crash between Fly's create and Pulumi's state write: adopt our own
                # app (same org); an app of that name elsewhere is someone else's and stays an error.
                app = client.find_app(inputs.name)
                if app is None or app.organization is None or app.organization.slug != inputs.org_slug:
                    raise
                log.info("adopting existing app %s in org %s", inputs.name, inputs.org_slug)
        return CreateResult(inputs.name, {**props, **_outputs(app)})

    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        # Only connection settings can change without a replace; nothing to do at Fly.
        return UpdateResult({**_olds, **news})

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        with self.client(props) as client:
            client.delete_app(id_)

    def read_live(self, client: FlyClient, id_: str, props: dict[str, Any]) -> dict[str, Any] | None:
        app = client.find_app(id_)
        return None if app is None else _outputs(app)


def _outputs(app: Any) -> dict[str, Any]:
    return {
        "app_id": app.id or app.name,
        "status": app.status or "",
        "org_slug": app.organization.slug if app.organization else None,
    }


class App(Resource):
    """A Fly app. Outputs: name, org_slug, app_id, status."""

    name: pulumi.Output[str]
    org_slug: pulumi.Output[str]
    app_id: pulumi.Output[str]
    status: pulumi.Output[str]

    def __init__(self, resource_name: str, *, name: pulumi.Input[str], org_slug: pulumi.Input[str],
                 connection: FlyConnectionArgs, network: pulumi.Input[str] | None = None,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        props: dict[str, Any] = {"name": name, "org_slug": org_slug, "network": network,
                                 "app_id": None, "status": None, **connection.props()}
        super().__init__(AppProvider(), resource_name, props, connection.secret_opts(opts))

