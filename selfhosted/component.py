"""``SelfHostedPair``: the relay and the agent VM on the user's own Fly account, as one component.

- ``<prefix>-relay``: public (shared IPv4 + IPv6) and on Flycast; the channel's credentials as Fly
  secrets; one machine from ``deploy/fly.relay.toml`` with ``CLAUDE_HOST=http://<prefix>-vm.flycast``.
- ``<prefix>-vm``: private (Flycast only), volume ``agentdata``; the Anthropic key as a Fly secret;
  one machine from ``deploy/fly.vm.toml`` with ``RELAY_CALLBACK_URL=http://<prefix>-relay.flycast``.
- Both machines carry the restart policy and the checks of their fly.toml in the config the Machines
  API receives; ``HealthGate`` reads both back and probes the relay's public ``/health``: the update
  fails unless they pass.

Secrets are Pulumi secrets from the caller (encrypted in state); the Fly token is not an input at all
(the providers read ``FLY_API_TOKEN`` from their process environment).
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Any

import pulumi

from fly.appconfig import FlyToml, load_fly_toml, machine_config
from fly.pricing import Billable
from fly.providers import App, AppSecrets, FlyConnectionArgs, IpAddress, Machine, Volume

from .health import HealthGate
from .settings import VM_SIZES, DeploySettings
from .target import Target

DEPLOY_DIR = Path(__file__).resolve().parent / "deploy"
VOLUME_NAME = "agentdata"
RELAY_IP_TYPES = ("shared_v4", "v6", "private_v6")  # public (shared IPv4 + IPv6) and on Flycast


@lru_cache(maxsize=None)
def fly_toml(role: str) -> FlyToml:
    return load_fly_toml(DEPLOY_DIR / f"fly.{role}.toml")


def flycast_url(app: str) -> str:
    return f"http://{app}.flycast"


# Machine metadata saying which pair a machine belongs to: a teardown by name removes an app only when its
# machines carry it, so a prefix typed on the teardown page never removes someone's unrelated app.
MARKER = "artifact_selfhosted"


def marker(settings: DeploySettings) -> dict[str, str]:
    return {MARKER: settings.prefix}


def relay_config(settings: DeploySettings) -> dict[str, Any]:
    env = {"PRIMARY_REGION": settings.region, "CLAUDE_HOST": flycast_url(settings.vm_app),
           "RELAY_CHANNEL": settings.channel}
    return machine_config(fly_toml("relay"), image=settings.relay_image, env=env, metadata=marker(settings))


def vm_config(settings: DeploySettings, volume_id: str) -> dict[str, Any]:
    env = {"PRIMARY_REGION": settings.region, "RELAY_CALLBACK_URL": flycast_url(settings.relay_app)}
    config = machine_config(fly_toml("vm"), image=settings.vm_image, env=env, mounts={VOLUME_NAME: volume_id},
                            metadata=marker(settings))
    config["guest"] = VM_SIZES[settings.vm_size].guest()
    return config


def pair_billables(settings: DeploySettings) -> list[Billable]:
    """What Fly bills for in the pair ``SelfHostedPair`` makes from these settings (its machines, the VM's volume,
    the addresses), for ``fly.pricing.estimate``: read from the settings alone, before any engine run (the plan
    page). Apps and secrets are not billed."""
    region = settings.region
    return [
        Billable("relay-machine", f"the relay's machine ({settings.relay_app}-0)", "machine", region=region,
                 guest=relay_config(settings).get("guest") or {}),
        *[Billable(f"relay-{kind}", f"the relay's {kind} address", "ip", ip_type=kind) for kind in RELAY_IP_TYPES],
        Billable("vm-volume", f"the agent VM's {settings.volume_size_gb} GB volume", "volume", region=region,
                 size_gb=settings.volume_size_gb),
        Billable("vm-machine", f"the agent VM's machine ({settings.vm_app}-0)", "machine", region=region,
                 guest=vm_config(settings, "vol_pending")["guest"]),
        Billable("vm-private_v6", "the agent VM's private_v6 address", "ip", ip_type="private_v6"),
    ]


def expected_checks(role: str) -> list[str]:
    return sorted(fly_toml(role).checks)


def _seconds(duration: str | None) -> float:
    """A Go duration as fly.toml writes them ("10s", "1m30s", "500ms") in seconds."""
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
    return sum(float(n) * units[u] for n, u in re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", duration or ""))


def critical_after(role: str, target: Target) -> float:
    """How long a check may stay critical before the deploy calls it failed: on Fly its grace period
    plus one interval (a machine that just booted); flysim decides checks at once."""
    if target.rehearsal:
        return 2.0
    checks = machine_config(fly_toml(role), image="-", mounts={VOLUME_NAME: "-"}).get("checks") or {}
    return max([_seconds(c.get("grace_period")) + _seconds(c.get("interval")) for c in checks.values()] + [10.0])


def restart_policy(config: dict[str, Any]) -> str:
    return (config.get("restart") or {}).get("policy") or "(none)"


class SelfHostedPair(pulumi.ComponentResource):
    def __init__(self, name: str, *, settings: DeploySettings, org_slug: str, target: Target,
                 relay_secrets: dict[str, pulumi.Input[str]], vm_secrets: dict[str, pulumi.Input[str]],
                 relay_extra_env: dict[str, str] | None = None, health_timeout: int = 120,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("artifact:selfhosted:SelfHostedPair", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        connection = FlyConnectionArgs(api_base_url=target.api_base_url, flaps_base_url=target.flaps_base_url)
        region = settings.region

        # The relay: public and on Flycast.
        self.relay_app = App("relay-app", name=settings.relay_app, org_slug=org_slug, connection=connection,
                             opts=child)
        self.relay_ips = [IpAddress(f"relay-{kind.replace('_', '-')}", app=self.relay_app.name, type=kind,
                                    org_slug=org_slug if kind == "private_v6" else None, connection=connection,
                                    opts=child)
                          for kind in RELAY_IP_TYPES]
        self.relay_secrets = AppSecrets("relay-secrets", app=self.relay_app.name,
                                        values={k: pulumi.Output.secret(v) for k, v in relay_secrets.items()},
                                        connection=connection, opts=child)
        relay_config_ = relay_config(settings)
        relay_config_["env"].update(relay_extra_env or {})
        self.relay_machine = Machine(
            "relay-machine", app=self.relay_app.name, name=f"{settings.relay_app}-0", region=region,
            config=relay_config_, min_secrets_version=self.relay_secrets.version, connection=connection,
            opts=child)

        # The agent VM: private (Flycast only), with its volume.
        self.vm_app = App("vm-app", name=settings.vm_app, org_slug=org_slug, connection=connection, opts=child)
        self.vm_flycast = IpAddress("vm-private-v6", app=self.vm_app.name, type="private_v6", org_slug=org_slug,
                                    connection=connection, opts=child)
        self.vm_volume = Volume("vm-volume", app=self.vm_app.name, name=VOLUME_NAME, region=region,
                                size_gb=settings.volume_size_gb, connection=connection, opts=child)
        self.vm_secrets = AppSecrets("vm-secrets", app=self.vm_app.name,
                                     values={k: pulumi.Output.secret(v) for k, v in vm_secrets.items()},
                                     connection=connection, opts=child)
        self.vm_machine = Machine(
            "vm-machine", app=self.vm_app.name, name=f"{settings.vm_app}-0", region=region,
            config=self.vm_volume.mount_id.apply(lambda volume_id: vm_config(settings, volume_id)),
            min_secrets_version=self.vm_secrets.version, connection=connection, opts=child)

        # Success means healthy: both machines' checks, then the relay's public /health (which needs
        # its public addresses).
        probe = target.health_probe(settings.relay_app)
        machines = pulumi.Output.all(self.relay_machine.machine_id, self.vm_machine.machine_id).apply(lambda ids: [
            {"app": settings.relay_app, "machine_id": ids[0], "checks": expected_checks("relay"),
             "restart_policy": restart_policy(relay_config_), "critical_after": critical_after("relay", target)},
            {"app": settings.vm_app, "machine_id": ids[1], "checks": expected_checks("vm"),
             "restart_policy": restart_policy(vm_config(settings, "vol_pending")),
             "critical_after": critical_after("vm", target)},
        ])
        self.health = HealthGate(
            "health", machines=machines, probe_app=settings.relay_app, probe_url=probe.url, probe_host=probe.host,
            api_base_url=target.api_base_url, flaps_base_url=target.flaps_base_url, timeout=health_timeout,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[*self.relay_ips, self.vm_flycast]))

        self.relay_url = target.public_url(settings.relay_app)
        self.register_outputs({"relay_url": self.relay_url, "health": self.health.passed_at})

