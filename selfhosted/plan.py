"""What a deploy will create, in words, shown (wizard) or printed (CLI) before anything is created."""

from __future__ import annotations

from dataclasses import dataclass

from fly.pricing import in_words
from fly.regions import REGIONS

from .account import Account
from .component import (VOLUME_NAME, expected_checks, flycast_url, pair_billables, relay_config, restart_policy,
                        vm_config)
from .settings import CHANNELS, VM_SIZES, Credentials, DeploySettings
from .target import Target


@dataclass(frozen=True)
class PlanItem:
    what: str
    detail: str


def plan(settings: DeploySettings, account: Account, target: Target, credentials: Credentials) -> list[PlanItem]:
    size = VM_SIZES[settings.vm_size]
    where = f"organization {account.org_name} ({account.org_slug}), region {settings.region} " \
            f"({REGIONS[settings.region]})"
    adopt = set(account.existing_apps)

    def app_line(app: str) -> str:
        return "exists: updated in place" if app in adopt else "new app"

    relay_secret_names = ", ".join(sorted(credentials.relay_secrets()))
    return [
        PlanItem("Where", f"{where} on {'flysim (rehearsal, no real Fly account)' if target.rehearsal else 'Fly.io'}"),
        PlanItem(f"App {settings.relay_app}", f"{app_line(settings.relay_app)}; the relay for {CHANNELS[settings.channel]}, "
                 f"public at {target.public_url(settings.relay_app)} (shared IPv4 + IPv6) and on Flycast"),
        PlanItem("Relay machine", f"1 machine, image {settings.relay_image}, restart policy "
                 f"{restart_policy(relay_config(settings))}, check{'s' if len(expected_checks('relay')) > 1 else ''} "
                 f"{', '.join(expected_checks('relay'))}; CLAUDE_HOST={flycast_url(settings.vm_app)}"),
        PlanItem("Relay secrets", f"{relay_secret_names} (values never shown or stored here)"),
        PlanItem(f"App {settings.vm_app}", f"{app_line(settings.vm_app)}; the agent VM, private (Flycast only, no "
                 "public IP)"),
        PlanItem("Agent VM volume", f"{VOLUME_NAME}, {settings.volume_size_gb} GB in {settings.region}"),
        PlanItem("Agent VM machine", f"1 machine, {settings.vm_size} ({size.cpus} {size.cpu_kind} CPU, "
                 f"{size.memory_mb} MB), image {settings.vm_image}, restart policy "
                 f"{restart_policy(vm_config(settings, 'vol_pending'))}; "
                 f"RELAY_CALLBACK_URL={flycast_url(settings.relay_app)}"),
        PlanItem("Agent VM secrets", "ANTHROPIC_API_KEY (value never shown or stored here)"),
        PlanItem("Fly bill", in_words(pair_billables(settings))),
        PlanItem("Success means", f"both machines' checks passing (read back from Fly) and "
                 f"{target.public_url(settings.relay_app)}/health answering ok; otherwise everything is rolled back"),
    ]
