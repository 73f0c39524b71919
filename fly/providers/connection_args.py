"""How a program hands the Fly endpoint and token to the dynamic providers: once per slice.

The top component takes a ``FlyConnectionArgs`` and sets it as its ``fly_connection``; every component
created under it (``opts.parent``) hands it on with ``inherit_connection``, and every Fly resource
finds it through its parent (``connection_in_scope``), the way Pulumi hands providers down to children.
"""

from __future__ import annotations

from typing import Any

import pulumi

SCOPE_ATTRIBUTE = "fly_connection"


class FlyConnectionArgs:
    """Endpoints as plain inputs; the token, if the stack config has one, as a Pulumi secret.

    Without a configured token the provider process uses ``FLY_API_TOKEN`` from its environment (as
    flyctl does), so no token ever reaches the state.
    """

    def __init__(self, *, api_base_url: str | None = None, flaps_base_url: str | None = None,
                 token: pulumi.Input[str] | None = None) -> None:
        self.api_base_url = api_base_url
        self.flaps_base_url = flaps_base_url
        self.token = pulumi.Output.secret(token) if token is not None else None

    def props(self) -> dict[str, Any]:
        props: dict[str, Any] = {"fly_api": {"api_base_url": self.api_base_url or "",
                                             "flaps_base_url": self.flaps_base_url or ""}}
        if self.token is not None:
            props["fly_token"] = self.token
        return props

    def secret_opts(self, opts: pulumi.ResourceOptions | None) -> pulumi.ResourceOptions:
        """Kept for callers of the previous layer; ``FlyResource`` marks the token secret itself."""
        extra = pulumi.ResourceOptions(additional_secret_outputs=["fly_token"])
        return pulumi.ResourceOptions.merge(opts, extra) if opts else extra


def connection_in_scope(opts: pulumi.ResourceOptions | None) -> FlyConnectionArgs | None:
    """The connection of the component a resource is created in (its ``opts.parent``)."""
    parent = opts.parent if opts is not None else None
    found = getattr(parent, SCOPE_ATTRIBUTE, None)
    return found if isinstance(found, FlyConnectionArgs) else None


def inherit_connection(component: pulumi.Resource, opts: pulumi.ResourceOptions | None,
                       connection: FlyConnectionArgs | None = None) -> FlyConnectionArgs | None:
    """Give ``component`` the connection it was handed, or else its parent's; returns it."""
    found = connection or connection_in_scope(opts)
    setattr(component, SCOPE_ATTRIBUTE, found)
    return found
