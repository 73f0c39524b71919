"""How a program hands the Fly endpoint and token to the dynamic providers."""

from __future__ import annotations

from typing import Any

import pulumi


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
        # Belt and braces: the token output is secret even if the engine did not carry secretness over.
        extra = pulumi.ResourceOptions(additional_secret_outputs=["fly_token"])
        return pulumi.ResourceOptions.merge(opts, extra) if opts else extra
