"""What an app has besides machines: secrets, IP assignments and ACME certificates."""

from __future__ import annotations

import re
from typing import Any, Literal

import pulumi
from pulumi.dynamic import CheckFailure, CreateResult, Resource, UpdateResult
from pydantic import Field

from ..client import FlyClient
from ..errors import FlyNotFound
from .base import FlyProvider, ProviderInputs
from .connection_args import FlyConnectionArgs

SECRET_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"


class AppSecretsInputs(ProviderInputs):
    app: str = Field(min_length=1)
    values: dict[str, str]


class AppSecretsProvider(FlyProvider):
    """Fly secrets of one app. ``version`` is the app's secrets version after the change; machines take
    it as ``min_secrets_version`` so they never boot with older secrets."""

    inputs_model = AppSecretsInputs
    replace_on = frozenset({"app"})
    kind = "app secrets"

    def extra_checks(self, _olds: dict[str, Any], news: dict[str, Any]) -> list[CheckFailure]:
        bad = [k for k in (news.get("values") or {}) if not re.match(SECRET_NAME, k)]
        return [CheckFailure("values", f"app secrets: {k!r} is not a valid secret name (letters, digits, _)")
                for k in bad]

    def create(self, props: dict[str, Any]) -> CreateResult:
        inputs = AppSecretsInputs.model_validate(self.desired(props))
        with self.client(props) as client:
            version = client.set_secrets(inputs.app, dict(inputs.values))
        return CreateResult(f"{inputs.app}/secrets", {**props, "version": version, "names": sorted(inputs.values)})

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        inputs = AppSecretsInputs.model_validate(self.desired(news))
        old_values: dict[str, str] = olds.get("values") or {}
        changes: dict[str, str | None] = {k: v for k, v in inputs.values.items() if old_values.get(k) != v}
        changes.update({k: None for k in old_values if k not in inputs.values})
        version = olds.get("version")
        if changes:
            with self.client(news) as client:
                version = client.set_secrets(inputs.app, changes)
        return UpdateResult({**news, "version": version, "names": sorted(inputs.values)})

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        names = list((props.get("values") or {}).keys())
        if not names:
            return
        with self.client(props) as client:
            try:
                client.set_secrets(props["app"], {k: None for k in names})
            except FlyNotFound:  # the app, and its secrets with it, is already gone
                pass

    def read_live(self, client: FlyClient, _id: str, props: dict[str, Any]) -> dict[str, Any] | None:
        if client.find_app(props["app"]) is None:
            return None
        return {"names": sorted(client.list_secret_names(props["app"]))}


class AppSecrets(Resource):
    version: pulumi.Output[int]
    names: pulumi.Output[list[str]]

    def __init__(self, resource_name: str, *, app: pulumi.Input[str], values: pulumi.Input[dict[str, str]],
                 connection: FlyConnectionArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        props = {"app": app, "values": pulumi.Output.secret(values), "version": None, "names": None,
                 **connection.props()}
        secret = pulumi.ResourceOptions(additional_secret_outputs=["values"])
        super().__init__(AppSecretsProvider(), resource_name, props,
                         pulumi.ResourceOptions.merge(connection.secret_opts(opts), secret))


class IpAddressInputs(ProviderInputs):
    app: str = Field(min_length=1)
    type: Literal["private_v6", "shared_v4", "v6", "v4"]
    region: str | None = None
    network: str | None = None
    org_slug: str | None = None


class IpAddressProvider(FlyProvider):
    """One IP assignment. ``private_v6`` is the Flycast address that makes ``<app>.flycast`` resolve."""

    inputs_model = IpAddressInputs
    replace_on = frozenset({"app", "type", "region", "network", "org_slug"})
    kind = "ip address"

    def create(self, props: dict[str, Any]) -> CreateResult:
        inputs = IpAddressInputs.model_validate(self.desired(props))
        with self.client(props) as client:
            # A rerun after a crash: an address of this kind that the app already has is ours.
            existing = [ip for ip in client.list_ips(inputs.app) if _kind(ip.ip, ip.shared) == inputs.type]
            ip = existing[0] if existing else client.assign_ip(
                inputs.app, inputs.type, region=inputs.region, network=inputs.network, org_slug=inputs.org_slug)
        return CreateResult(ip.ip, {**props, "address": ip.ip})

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        return UpdateResult({**olds, **news})

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        with self.client(props) as client:
            client.release_ip(props["app"], id_)  # a 404 (address or app gone) is success

    def read_live(self, client: FlyClient, id_: str, props: dict[str, Any]) -> dict[str, Any] | None:
        if client.find_app(props["app"]) is None:
            return None
        return {"address": id_} if any(ip.ip == id_ for ip in client.list_ips(props["app"])) else None


def _kind(address: str, shared: bool | None) -> str:
    if address.startswith("fdaa:"):
        return "private_v6"
    if ":" in address:
        return "v6"
    return "shared_v4" if shared else "v4"


class IpAddress(Resource):
    address: pulumi.Output[str]

    def __init__(self, resource_name: str, *, app: pulumi.Input[str], type: str, connection: FlyConnectionArgs,
                 org_slug: pulumi.Input[str] | None = None, network: str | None = None,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        props = {"app": app, "type": type, "region": None, "network": network, "org_slug": org_slug,
                 "address": None, **connection.props()}
        super().__init__(IpAddressProvider(), resource_name, props, connection.secret_opts(opts))


class CertificateInputs(ProviderInputs):
    app: str = Field(min_length=1)
    hostname: str = Field(pattern=r"^([a-z0-9-]{1,63}\.)+[a-z]{2,63}$", max_length=253,
                          description="a DNS name such as slice.example.com")


class CertificateProvider(FlyProvider):
    inputs_model = CertificateInputs
    replace_on = frozenset({"app", "hostname"})
    kind = "certificate"

    def create(self, props: dict[str, Any]) -> CreateResult:
        inputs = CertificateInputs.model_validate(self.desired(props))
        with self.client(props) as client:
            cert = client.request_acme_certificate(inputs.app, inputs.hostname)
        return CreateResult(inputs.hostname, {**props, "status": cert.status or ""})

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        return UpdateResult({**olds, **news})

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        with self.client(props) as client:
            client.delete_certificate(props["app"], id_)  # a 404 (certificate or app gone) is success

    def read_live(self, client: FlyClient, id_: str, props: dict[str, Any]) -> dict[str, Any] | None:
        try:
            return {"status": client.get_certificate(props["app"], id_).status or ""}
        except FlyNotFound:
            return None


class Certificate(Resource):
    status: pulumi.Output[str]

    def __init__(self, resource_name: str, *, app: pulumi.Input[str], hostname: pulumi.Input[str],
                 connection: FlyConnectionArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        props = {"app": app, "hostname": hostname, "status": None, **connection.props()}
        super().__init__(CertificateProvider(), resource_name, props, connection.secret_opts(opts))
