"""What a self-hosted deploy needs, validated before any API call: the plain settings and the
credentials (held as ``SecretStr``, so no ``repr``, log line or error message shows them).

Every message names the field, the problem in words and the fix (the wizard shows it beside the
field, the CLI prints it)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator

from fly.regions import FlyRegion


@dataclass(frozen=True)
class VmSize:
    cpu_kind: Literal["shared", "performance"]
    cpus: int
    memory_mb: int  # the size's default; Fly allows other amounts within the kind's per-CPU range

    def guest(self) -> dict[str, object]:
        return {"cpu_kind": self.cpu_kind, "cpus": self.cpus, "memory_mb": self.memory_mb}


# The agent VM's sizes (Fly's presets), with memory that runs the agent.
VM_SIZES: dict[str, VmSize] = {
    "shared-cpu-1x": VmSize("shared", 1, 1024),
    "shared-cpu-2x": VmSize("shared", 2, 1024),
    "shared-cpu-4x": VmSize("shared", 4, 2048),
    "performance-1x": VmSize("performance", 1, 2048),
    "performance-2x": VmSize("performance", 2, 4096),
}
DEFAULT_VM_SIZE = "shared-cpu-2x"

Channel = Literal["whatsapp", "discord", "telegram"]
CHANNELS: dict[str, str] = {"whatsapp": "WhatsApp (Twilio)", "discord": "Discord", "telegram": "Telegram"}
_PREFIX = re.compile(r"^[a-z][a-z0-9-]{0,28}[a-z0-9]$")
_IMAGE = re.compile(r"^[a-z0-9.-]+(:[0-9]+)?(/[a-z0-9._-]+)+(:[A-Za-z0-9._-]{1,128})?(@sha256:[a-f0-9]{64})?$")
_TWILIO_SID = re.compile(r"^AC[0-9a-fA-F]{32}$")
_PHONE = re.compile(r"^\+[1-9][0-9]{6,14}$")

RELAY_IMAGE = "registry.fly.io/artifact-relay:2026.11.1"
VM_IMAGE = "registry.fly.io/artifact-agent-vm:2026.11.1"


class SettingsError(ValueError):
    """Bad input; ``problems`` maps each field to its message (for the form), ``str`` joins them."""

    def __init__(self, problems: dict[str, str]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{k}: {v}" for k, v in problems.items()))


class DeploySettings(BaseModel):
    """The plain (non-secret) settings of one deploy."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    prefix: str = Field(description="names the apps: <prefix>-relay and <prefix>-vm")
    org: str = "personal"
    region: FlyRegion = "ams"
    vm_size: str = DEFAULT_VM_SIZE
    volume_size_gb: int = Field(default=1, ge=1, le=500)
    channel: Channel = "whatsapp"
    relay_image: str = RELAY_IMAGE
    vm_image: str = VM_IMAGE

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        if not _PREFIX.match(value):
            raise ValueError(f"{value!r} can't prefix Fly app names: use 2-30 lowercase letters, digits and "
                             "hyphens, starting with a letter and not ending with a hyphen (e.g. alice-bot)")
        if "--" in value:
            raise ValueError(f"{value!r} has two hyphens in a row; use single hyphens (e.g. alice-bot)")
        return value

    @field_validator("org")
    @classmethod
    def _org(cls, value: str) -> str:
        if not re.match(r"^[a-z0-9][a-z0-9-]{0,62}$", value):
            raise ValueError(f"{value!r} is not an organization slug: use the slug `fly orgs list` shows "
                             "(lowercase letters, digits and hyphens, e.g. personal)")
        return value

    @field_validator("vm_size")
    @classmethod
    def _size(cls, value: str) -> str:
        if value not in VM_SIZES:
            raise ValueError(f"{value!r} is not a size for the agent VM; pick one of {', '.join(VM_SIZES)}")
        return value

    @field_validator("relay_image", "vm_image")
    @classmethod
    def _image(cls, value: str) -> str:
        if not _IMAGE.match(value):
            raise ValueError(f"{value!r} is not an image reference; use registry/repository:tag, "
                             f"e.g. {RELAY_IMAGE}")
        return value

    @property
    def relay_app(self) -> str:
        return f"{self.prefix}-relay"

    @property
    def vm_app(self) -> str:
        return f"{self.prefix}-vm"


class Credentials(BaseModel):
    """The user's credentials. They live in memory only: never in a file, log, page or Pulumi state."""

    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    fly_token: SecretStr | None = None
    anthropic_api_key: SecretStr | None = None
    channel: Channel = "whatsapp"
    twilio_account_sid: SecretStr | None = None
    twilio_auth_token: SecretStr | None = None
    twilio_whatsapp_number: str | None = None
    discord_bot_token: SecretStr | None = None
    telegram_bot_token: SecretStr | None = None

    @field_validator("fly_token", "anthropic_api_key", "twilio_account_sid", "twilio_auth_token",
                     "discord_bot_token", "telegram_bot_token", mode="before")
    @classmethod
    def _strip(cls, value: object) -> object:
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        if isinstance(value, str):
            value = value.strip()
            return value or None
        return value

    @model_validator(mode="after")
    def _channel_credentials(self) -> Credentials:
        problems: dict[str, str] = {}
        if self.fly_token is None:
            problems["fly_token"] = ("is required: create one with `fly tokens create org` or in the Fly dashboard "
                                     "(Account, Access Tokens)")
        key = self.anthropic_api_key.get_secret_value() if self.anthropic_api_key else ""
        if not key:
            problems["anthropic_api_key"] = "is required: create one at console.anthropic.com (API Keys)"
        elif len(key) < 20 or any(c.isspace() for c in key):
            problems["anthropic_api_key"] = "does not look like an Anthropic API key (sk-ant-...); paste the whole key"
        if self.channel == "whatsapp":
            sid = self.twilio_account_sid.get_secret_value() if self.twilio_account_sid else ""
            if not sid:
                problems["twilio_account_sid"] = "is required for WhatsApp: the Account SID on the Twilio console"
            elif not _TWILIO_SID.match(sid):
                problems["twilio_account_sid"] = "is not a Twilio Account SID (AC followed by 32 hex digits)"
            if not self.twilio_auth_token:
                problems["twilio_auth_token"] = "is required for WhatsApp: the Auth Token on the Twilio console"
            if not self.twilio_whatsapp_number or not _PHONE.match(self.twilio_whatsapp_number):
                problems["twilio_whatsapp_number"] = ("is required for WhatsApp: your Twilio WhatsApp sender in "
                                                      "international form, e.g. +14155238886")
        elif self.channel == "discord" and not self.discord_bot_token:
            problems["discord_bot_token"] = "is required for Discord (Developer Portal, Bot, Reset Token)"
        elif self.channel == "telegram" and not self.telegram_bot_token:
            problems["telegram_bot_token"] = "is required for Telegram (from @BotFather)"
        if problems:
            raise SettingsError(problems)
        return self

    def relay_secrets(self) -> dict[str, str]:
        """Fly secrets of the relay: the channel's credentials."""
        values = {"whatsapp": {"TWILIO_ACCOUNT_SID": self.twilio_account_sid, "TWILIO_AUTH_TOKEN": self.twilio_auth_token},
                  "discord": {"DISCORD_BOT_TOKEN": self.discord_bot_token},
                  "telegram": {"TELEGRAM_BOT_TOKEN": self.telegram_bot_token}}[self.channel]
        return {k: v.get_secret_value() for k, v in values.items() if v is not None}

    def vm_secrets(self) -> dict[str, str]:
        """Fly secrets of the agent VM."""
        assert self.anthropic_api_key is not None  # the validator requires it
        return {"ANTHROPIC_API_KEY": self.anthropic_api_key.get_secret_value()}

    @property
    def token(self) -> str:
        assert self.fly_token is not None  # the validator requires it
        return self.fly_token.get_secret_value()

    def values(self) -> list[str]:
        """Every credential value (for redaction)."""
        return [v.get_secret_value() for v in (self.fly_token, self.anthropic_api_key, self.twilio_account_sid,
                                               self.twilio_auth_token, self.discord_bot_token,
                                               self.telegram_bot_token) if v is not None]



def _problems(exc: ValidationError) -> dict[str, str]:
    problems: dict[str, str] = {}
    for error in exc.errors():
        field = str(error["loc"][0]) if error["loc"] else "form"
        ctx_error = (error.get("ctx") or {}).get("error")
        if isinstance(ctx_error, SettingsError):
            problems.update(ctx_error.problems)
            continue
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "missing":
            message = "is required"
        elif error["type"] == "extra_forbidden":
            message = "is not a known setting; check its spelling"
        elif error["type"] in ("int_parsing", "int_from_float"):
            message = "must be a whole number"
        elif error["type"] in ("greater_than_equal", "less_than_equal"):
            message = f"must be between {field_bounds(field)}"
        elif error["type"] == "literal_error":
            message = f"must be one of {', '.join(CHANNELS)}"
        problems[field] = message
    return problems


def field_bounds(field: str) -> str:
    lo = hi = None
    for item in DeploySettings.model_fields[field].metadata:
        lo = getattr(item, "ge", lo)
        hi = getattr(item, "le", hi)
    return f"{lo} and {hi}"


def parse(settings: dict[str, object], credentials: dict[str, object]) -> tuple[DeploySettings, Credentials]:
    """Both models at once, so the user sees every problem in one go. Never echoes a credential."""
    problems: dict[str, str] = {}
    parsed_settings = parsed_credentials = None
    try:
        parsed_settings = DeploySettings.model_validate(settings)
    except ValidationError as exc:
        problems.update(_problems(exc))
    try:
        parsed_credentials = Credentials.model_validate(
            {**credentials, "channel": settings.get("channel", "whatsapp")})
    except ValidationError as exc:
        problems.update({k: v for k, v in _problems(exc).items() if k != "channel"})
    if problems or parsed_settings is None or parsed_credentials is None:
        raise SettingsError(problems)
    return parsed_settings, parsed_credentials


def parse_settings(settings: dict[str, object]) -> DeploySettings:
    try:
        return DeploySettings.model_validate(settings)
    except ValidationError as exc:
        raise SettingsError(_problems(exc)) from None
