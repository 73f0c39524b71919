"""What a self-hosted deploy needs, validated before any API call: the plain settings and the
credentials (held as ``SecretStr``, so no ``repr``, log line or error message shows them).

Every message names the field, the problem in words and the fix (the wizard shows it beside the
field, the CLI prints it)."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
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
# Written so that, without ^ and $, they are also valid HTML `pattern`s (JavaScript's `v` flag wants a
# class's hyphen escaped): the wizard's inputs mirror these very checks (``html_pattern``).
PREFIX_MAX = 30
PREFIX_RULE = (f"use 2-{PREFIX_MAX} lowercase letters, digits and hyphens, starting with a letter and not ending "
               "with a hyphen (e.g. alice-bot)")
_PREFIX = re.compile(rf"^(?!.*--)[a-z][a-z0-9\-]{{0,{PREFIX_MAX - 2}}}[a-z0-9]$")
_ORG = re.compile(r"^[a-z0-9][a-z0-9\-]{0,62}$")
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
        if "--" in value:
            raise ValueError(f"{value!r} has two hyphens in a row; use single hyphens (e.g. alice-bot)")
        if not _PREFIX.match(value):
            raise ValueError(f"{value!r} can't prefix Fly app names: {PREFIX_RULE}")
        return value

    @field_validator("org")
    @classmethod
    def _org(cls, value: str) -> str:
        if not _ORG.match(value):
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


@dataclass(frozen=True)
class FieldRule:
    """What one field may hold, said once: the server checks it, and the wizard's inputs mirror it
    (``maxlength``, ``pattern``) so a phone shows a bad value before it is sent."""

    label: str
    max_length: int
    pattern: re.Pattern[str] | None = None
    secret: bool = False
    rule: str = ""  # the rule in words, for a value too long to show

    @property
    def html_pattern(self) -> str | None:
        return self.pattern.pattern.removeprefix("^").removesuffix("$") if self.pattern else None


def _upper_bound(name: str) -> int:
    return next(item.le for item in DeploySettings.model_fields[name].metadata if hasattr(item, "le"))


# Secrets get room far beyond any real one (an Anthropic key is about 110 characters, a Fly token a few
# KB: a macaroon, or several joined by commas), so a browser's maxlength never cuts a paste short.
FIELDS: dict[str, FieldRule] = {
    "prefix": FieldRule("Name prefix", PREFIX_MAX, _PREFIX, rule=PREFIX_RULE),
    "org": FieldRule("Organization", 63, _ORG, rule="use the slug `fly orgs list` shows (e.g. personal)"),
    "region": FieldRule("Region", 8),
    "channel": FieldRule("Channel", 16),
    "vm_size": FieldRule("Agent VM size", 32),
    "volume_size_gb": FieldRule("Agent VM volume (GB)", len(str(_upper_bound("volume_size_gb"))),
                                re.compile(r"^[0-9]+$"),
                                rule=f"a whole number of GB, between {field_bounds('volume_size_gb')}"),
    "relay_image": FieldRule("Relay image", 512),
    "vm_image": FieldRule("Agent VM image", 512),
    "twilio_whatsapp_number": FieldRule("Twilio WhatsApp number", 16, _PHONE, rule="e.g. +14155238886"),
    "fly_token": FieldRule("Fly API token", 16384, secret=True),
    "anthropic_api_key": FieldRule("Anthropic API key", 4096, secret=True),
    "twilio_account_sid": FieldRule("Twilio Account SID", 4096, secret=True),
    "twilio_auth_token": FieldRule("Twilio Auth Token", 4096, secret=True),
    "discord_bot_token": FieldRule("Discord bot token", 4096, secret=True),
    "telegram_bot_token": FieldRule("Telegram bot token", 4096, secret=True),
}
SECRET_FIELDS = tuple(name for name, rule in FIELDS.items() if rule.secret)
# A whole form stays far below this; anything bigger is a paste gone wrong, refused before it is parsed.
MAX_FORM_BYTES = 64 * 1024

# Characters a phone's paste or keyboard brings that nobody sees: spaces of every kind, line breaks and
# other control characters, and Unicode's format characters (zero-width space, joiners, BOM, marks).
_INVISIBLE = {"Cc", "Cf", "Zs", "Zl", "Zp"}


def _invisible(char: str) -> bool:
    return unicodedata.category(char) in _INVISIBLE


def describe(char: str) -> str:
    """A character in words: U+200B ZERO WIDTH SPACE."""
    fallback = {"\t": "TAB", "\r": "CARRIAGE RETURN", "\n": "LINE FEED"}.get(char, "CONTROL CHARACTER")
    return f"U+{ord(char):04X} {unicodedata.name(char, fallback)}"


@dataclass(frozen=True)
class Cleaned:
    value: str
    note: str | None = None  # what was removed, in words (shown with the plan)
    problem: str | None = None  # why the value is refused, in words (beside the field)


def clean(name: str, value: str) -> Cleaned:
    """One field's value as a phone pastes it, made safe or refused in words (never echoing it):

    - invisible characters at either end (a newline, a BOM, a no-break space) are dropped: nobody means them;
    - in a secret, format characters anywhere (a zero-width space a phone pasted) are dropped, with a note:
      no token, key or SID has one; any other character that is not printable ASCII (a line break inside,
      a no-break space, a curly quote) is refused (a Fly token may hold one space: ``FlyV1 fm2_...``);
    - in a plain field, an invisible character inside is refused with its position (the field is visible);
    - a value longer than its field allows is refused by its length alone, never shown back.
    """
    rule = FIELDS.get(name)
    start, end = 0, len(value)
    while start < end and _invisible(value[start]):
        start += 1
    while end > start and _invisible(value[end - 1]):
        end -= 1
    value = value[start:end]
    if rule and len(value) > rule.max_length:
        return Cleaned("", problem=f"is {len(value):,} characters long; at most {rule.max_length:,} fit"
                       + (f": {rule.rule}" if rule.rule else ": check what was pasted"))
    note = None
    if rule and rule.secret:
        removed = [c for c in value if unicodedata.category(c) == "Cf"]
        if removed:
            value = "".join(c for c in value if unicodedata.category(c) != "Cf")
            kinds = ", ".join(dict.fromkeys(describe(c) for c in removed))
            many = f"{len(removed)} invisible characters" if len(removed) > 1 else "an invisible character"
            note = f"The {rule.label} held {many} ({kinds}), as a phone's paste can add; removed."
        for char in value:
            if char in "\r\n":
                return Cleaned("", problem="contains a line break: paste it again as one line")
            if char == " " and name == "fly_token":
                continue  # "FlyV1 fm2_..." (the scheme, then the token)
            if not "!" <= char <= "~":
                what = "an invisible character" if _invisible(char) else "a character"
                return Cleaned("", problem=f"contains {what} ({describe(char)}) that no {rule.label} has: paste "
                                           "it again, copied afresh from where it was made")
    else:
        for position, char in enumerate(value, 1):
            if char in "\r\n":
                return Cleaned("", problem="contains a line break: type it on one line")
            if _invisible(char) and char != " ":
                return Cleaned("", problem=f"contains an invisible character ({describe(char)}) at character "
                                           f"{position}: delete it, or type the value again")
    return Cleaned(value, note)


def _clean_all(values: dict[str, object], problems: dict[str, str], notes: list[str]) -> dict[str, object]:
    """The values cleaned; a refused one is left out (its problem said once, not again as "required")."""
    out: dict[str, object] = {}
    for name, value in values.items():
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        if not isinstance(value, str):
            out[name] = value
            continue
        cleaned = clean(name, value)
        if cleaned.problem:
            problems[name] = cleaned.problem
            continue
        if cleaned.note:
            notes.append(cleaned.note)
        out[name] = cleaned.value
    return out


@dataclass(frozen=True)
class ParsedForm:
    settings: DeploySettings
    credentials: Credentials
    notes: list[str] = field(default_factory=list)  # what cleaning removed, in words


def parse_form(settings: dict[str, object], credentials: dict[str, object]) -> ParsedForm:
    """Both models at once, so the user sees every problem in one go. Never echoes a credential.
    An empty plain setting means its default."""
    cleaning: dict[str, str] = {}
    notes: list[str] = []
    settings = {k: v for k, v in _clean_all(settings, cleaning, notes).items() if v != ""}
    credentials = _clean_all(credentials, cleaning, notes)
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
    problems.update(cleaning)  # the cleaning's words, not "is required" for the value it refused
    if problems or parsed_settings is None or parsed_credentials is None:
        raise SettingsError(problems)
    return ParsedForm(parsed_settings, parsed_credentials, notes)


def parse(settings: dict[str, object], credentials: dict[str, object]) -> tuple[DeploySettings, Credentials]:
    parsed = parse_form(settings, credentials)
    return parsed.settings, parsed.credentials


def parse_settings(settings: dict[str, object]) -> DeploySettings:
    cleaning: dict[str, str] = {}
    settings = {k: v for k, v in _clean_all(settings, cleaning, []).items() if v != ""}
    try:
        parsed = DeploySettings.model_validate(settings)
    except ValidationError as exc:
        raise SettingsError({**_problems(exc), **cleaning}) from None
    if cleaning:
        raise SettingsError(cleaning)
    return parsed


def parse_teardown(settings: dict[str, object], token: str | None) -> tuple[DeploySettings, str]:
    """A teardown's prefix and org, and its Fly token cleaned like a deploy's."""
    problems: dict[str, str] = {}
    parsed = None
    try:
        parsed = parse_settings(settings)
    except SettingsError as exc:
        problems.update(exc.problems)
    cleaned = clean("fly_token", token or "")
    if cleaned.problem:
        problems["fly_token"] = cleaned.problem
    elif not cleaned.value:
        problems["fly_token"] = "is required (the token is never kept after a job)"
    if problems or parsed is None:
        raise SettingsError(problems)
    return parsed, cleaned.value
