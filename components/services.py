"""``Router`` and ``ExecService``: the slice's two always-on services, one machine each from their
fly.toml, with the DC_* environment naming the slice's final apps."""

from __future__ import annotations

from typing import Any, Sequence

import pulumi

from fly.appconfig import machine_config
from fly.providers import App, AppSecrets, Certificate, FlyConnectionArgs, IpAddress, Machine, inherit_connection

from .deploy import fly_toml


def dc_env(prefix: str, domain: str) -> dict[str, str]:
    """Every service finds the others by these names (and `<app>.flycast` on the private network)."""
    return {
        "DC_DOMAIN": domain,
        "DC_NFS": f"{prefix}-nfs",
        "DC_ROUTER": f"{prefix}-fly-router",
        "DC_EXEC": f"{prefix}-fly-exec",
        "DC_WORKER_POOL_APP": f"{prefix}-worker-pool",
    }


class PlatformService(pulumi.ComponentResource):
    """An app with a Flycast address and one machine built from ``deploy/fly.<service>.toml``."""

    def __init__(self, type_: str, name: str, *, service: str, app_name: str, org_slug: pulumi.Input[str],
                 region: str, image: str, env: dict[str, str], connection: FlyConnectionArgs | None = None,
                 secrets: dict[str, pulumi.Input[str]] | None = None, public_hostname: str | None = None,
                 depends_on: Sequence[pulumi.Resource] = (), opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(type_, name, None, opts)
        inherit_connection(self, opts, connection)
        child = pulumi.ResourceOptions(parent=self)
        toml = fly_toml(service)
        self.app = App(f"{name}-app", name=app_name, org_slug=org_slug, opts=child)
        self.flycast = IpAddress(f"{name}-flycast", app=self.app.name, type="private_v6", org_slug=org_slug, opts=child)
        self.public_ips: list[IpAddress] = []
        self.certificate: Certificate | None = None
        if public_hostname:
            self.public_ips = [IpAddress(f"{name}-{kind.replace('_', '-')}", app=self.app.name, type=kind,
                                         opts=child) for kind in ("shared_v4", "v6")]
            self.certificate = Certificate(f"{name}-certificate", app=self.app.name, hostname=public_hostname,
                                           opts=child)
        secrets_version: pulumi.Input[int] | None = None
        self.secrets: AppSecrets | None = None
        if secrets:
            self.secrets = AppSecrets(f"{name}-secrets", app=self.app.name, values=secrets,
                                      opts=child)
            secrets_version = self.secrets.version
        config: dict[str, Any] = machine_config(toml, image=image, env={"PRIMARY_REGION": region, **env})
        self.machine = Machine(
            f"{name}-machine", app=self.app.name, name=f"{app_name}-0", region=region, config=config,
            min_secrets_version=secrets_version,
            opts=pulumi.ResourceOptions(parent=self, depends_on=list(depends_on)))
        self.register_outputs({"app": self.app.name, "machine_id": self.machine.machine_id})


class Router(PlatformService):
    """``<prefix>-fly-router``: public ingress with IPv4/IPv6, a certificate for the slice's domain and
    the Clerk keys as Fly secrets."""

    def __init__(self, name: str, **kwargs: Any) -> None:
        super().__init__("artifact:slice:Router", name, service="router", **kwargs)


class ExecService(PlatformService):
    """``<prefix>-fly-exec``: deployed after the router; creates worker machines in the worker pool."""

    def __init__(self, name: str, **kwargs: Any) -> None:
        super().__init__("artifact:slice:ExecService", name, service="exec", **kwargs)
