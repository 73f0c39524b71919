"""What an app has besides machines: secrets, IP assignments and ACME certificates."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Literal

from pulumi.dynamic import CheckFailure
from pydantic import Field

from ..errors import FlyNotFound
from .base import FlyProvider, FlyResource, ProviderInputs, ProviderOutputs, contains_unknown

if TYPE_CHECKING:  # the program process never needs the HTTP client (nor its import time)
    from ..client import FlyClient

SECRET_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"


# -- secrets ---------------------------------------------------------------------------------------------

class AppSecretsInputs(ProviderInputs):
    app: str = Field(min_length=1)
    values: dict[str, str] = Field(json_schema_extra={"secret": True})


class AppSecretsOutputs(ProviderOutputs):
    version: int | None = None
    names: list[str] = Field(default_factory=list)


class AppSecretsProvider(FlyProvider[AppSecretsInputs, AppSecretsOutputs]):
    """Fly secrets of one app. ``version`` is the app's secrets version after the change; machines take
    it as ``min_secrets_version`` so they never boot with older secrets. A secret deleted outside Pulumi
    shows in refresh (``names``) and the next ``up`` sets it again."""

    Inputs, Outputs = AppSecretsInputs, AppSecretsOutputs
    replace_on = frozenset({"app"})
    kind = "app secrets"

    def extra_checks(self, olds: dict[str, Any], news: dict[str, Any]) -> list[CheckFailure]:
        values = news.get("values")
        if not isinstance(values, dict):
            return []
        return [CheckFailure("values", f"app secrets: {k!r} is not a valid secret name (letters, digits, _)")
                for k in values if not re.match(SECRET_NAME, k)]

    def drifted(self, olds: dict[str, Any], news: dict[str, Any]) -> bool:
        values = news.get("values")
        if contains_unknown(values) or not isinstance(values, dict) or olds.get("names") is None:
            return False
        return not set(values) <= set(olds["names"])  # one of ours is missing (others' secrets are theirs)

    def create_resource(self, client: FlyClient, inputs: AppSecretsInputs) -> tuple[str, AppSecretsOutputs]:
        version = client.set_secrets(inputs.app, dict(inputs.values))
        return f"{inputs.app}/secrets", AppSecretsOutputs(version=version, names=sorted(inputs.values))

    def update_resource(self, client: FlyClient, id_: str, olds: AppSecretsInputs | None, inputs: AppSecretsInputs,
                        state: AppSecretsOutputs) -> AppSecretsOutputs:
        old_values = olds.values if olds is not None else {}
        live = set(state.names)
        # Set what changed, and what refresh found missing; unset what the program no longer has.
        changes: dict[str, str | None] = {k: v for k, v in inputs.values.items()
                                          if old_values.get(k) != v or k not in live}
        changes.update({k: None for k in old_values if k not in inputs.values})
        version = state.version
        if changes:
            version = client.set_secrets(inputs.app, changes)
        return AppSecretsOutputs(version=version, names=sorted(inputs.values))

    def delete_resource(self, client: FlyClient, id_: str, inputs: AppSecretsInputs, state: AppSecretsOutputs) -> None:
        if not inputs.values:
            return
        try:
            client.set_secrets(inputs.app, {k: None for k in inputs.values})
        except FlyNotFound:  # the app, and its secrets with it, is already gone
            pass

    def read_resource(self, client: FlyClient, id_: str, inputs: AppSecretsInputs,
                      state: AppSecretsOutputs) -> AppSecretsOutputs | None:
        try:
            names = client.list_secret_names(inputs.app)
        except FlyNotFound:
            return None
        return state.model_copy(update={"names": sorted(names)})


class AppSecrets(FlyResource):
    provider = AppSecretsProvider


# -- IP addresses ----------------------------------------------------------------------------------------

class IpAddressInputs(ProviderInputs):
    app: str = Field(min_length=1)
    type: Literal["private_v6", "shared_v4", "v6", "v4"]
    region: str | None = None
    network: str | None = None
    org_slug: str | None = None


class IpAddressOutputs(ProviderOutputs):
    address: str = ""


def _kind(address: str, shared: bool | None) -> str:
    if address.startswith("fdaa:"):
        return "private_v6"
    if ":" in address:
        return "v6"
    return "shared_v4" if shared else "v4"


class IpAddressProvider(FlyProvider[IpAddressInputs, IpAddressOutputs]):
    """One IP assignment. ``private_v6`` is the Flycast address that makes ``<app>.flycast`` resolve."""

    Inputs, Outputs = IpAddressInputs, IpAddressOutputs
    replace_on = frozenset({"app", "type", "region", "network", "org_slug"})
    adoption = ("an app has one address of each type this program assigns: Fly answers a repeated shared_v4 "
                "request with the app's shared address; of the other types, one the app already has is adopted")
    kind = "ip address"

    def create_resource(self, client: FlyClient, inputs: IpAddressInputs) -> tuple[str, IpAddressOutputs]:
        existing = [] if inputs.type == "shared_v4" else [
            ip for ip in client.list_ips(inputs.app) if _kind(ip.ip, ip.shared) == inputs.type]
        ip = existing[0] if existing else client.assign_ip(
            inputs.app, inputs.type, region=inputs.region, network=inputs.network, org_slug=inputs.org_slug)
        return ip.ip, IpAddressOutputs(address=ip.ip)

    def delete_resource(self, client: FlyClient, id_: str, inputs: IpAddressInputs, state: IpAddressOutputs) -> None:
        client.release_ip(inputs.app, id_)  # a 404 (address or app gone) is success

    def read_resource(self, client: FlyClient, id_: str, inputs: IpAddressInputs,
                      state: IpAddressOutputs) -> IpAddressOutputs | None:
        try:
            ips = client.list_ips(inputs.app)
        except FlyNotFound:
            return None
        return IpAddressOutputs(address=id_) if any(ip.ip == id_ for ip in ips) else None


class IpAddress(FlyResource):
    provider = IpAddressProvider


# -- certificates ----------------------------------------------------------------------------------------

class CertificateInputs(ProviderInputs):
    app: str = Field(min_length=1)
    hostname: str = Field(pattern=r"^([a-z0-9-]{1,63}\.)+[a-z]{2,63}$", max_length=253,
                          description="a DNS name such as slice.example.com")


class CertificateOutputs(ProviderOutputs):
    status: str = ""


class CertificateProvider(FlyProvider[CertificateInputs, CertificateOutputs]):
    Inputs, Outputs = CertificateInputs, CertificateOutputs
    replace_on = frozenset({"app", "hostname"})
    adoption = "none needed: requesting the certificate of a hostname the app already has answers that one"
    kind = "certificate"

    def create_resource(self, client: FlyClient, inputs: CertificateInputs) -> tuple[str, CertificateOutputs]:
        cert = client.request_acme_certificate(inputs.app, inputs.hostname)
        return inputs.hostname, CertificateOutputs(status=cert.status or "")

    def delete_resource(self, client: FlyClient, id_: str, inputs: CertificateInputs,
                        state: CertificateOutputs) -> None:
        client.delete_certificate(inputs.app, id_)  # a 404 (certificate or app gone) is success

    def read_resource(self, client: FlyClient, id_: str, inputs: CertificateInputs,
                      state: CertificateOutputs) -> CertificateOutputs | None:
        try:
            return CertificateOutputs(status=client.get_certificate(inputs.app, id_).status or "")
        except FlyNotFound:
            return None


class Certificate(FlyResource):
    provider = CertificateProvider
