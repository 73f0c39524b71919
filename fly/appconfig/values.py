"""Value parsers for fly.toml: flyctl's patches.go casts (numeric strings, old shapes), fly-go's
Duration and Autostop, docker/go-units sizes; and the annotated types the schema is written in."""

from __future__ import annotations

import re
import shlex
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BeforeValidator

from .errors import BadValue

_DURATION_PART = re.compile(r"(\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_NS = {"ns": 1, "us": 10**3, "µs": 10**3, "μs": 10**3, "ms": 10**6, "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9}
_SIZE = re.compile(r"^(\d+(?:\.\d+)*) ?([kmgtp])?i?b?$", re.IGNORECASE)


def _go_duration(ns: int) -> str:
    """Go's time.Duration.String(): what fly-go puts on the wire for durations ("1m30s", "500ms")."""
    if ns == 0:
        return "0s"
    sign, u = ("-" if ns < 0 else ""), abs(ns)

    def frac(v: int, prec: int) -> str:
        whole, rest = divmod(v, 10**prec)
        return f"{whole}.{str(rest).rjust(prec, '0').rstrip('0')}" if rest else str(whole)

    if u < 10**3:
        return f"{sign}{u}ns"
    if u < 10**6:
        return f"{sign}{frac(u, 3)}µs"
    if u < 10**9:
        return f"{sign}{frac(u, 6)}ms"
    hours, rest = divmod(u, 3600 * 10**9)
    minutes, rest = divmod(rest, 60 * 10**9)
    out = f"{frac(rest, 9)}s"
    if hours or minutes:
        out = f"{minutes}m{out}"
    return sign + (f"{hours}h{out}" if hours else out)


def _duration(value: Any, bare_unit_ns: int) -> str | None:
    # patches.go _castDuration: bare numbers are seconds for kill_timeout, milliseconds for checks.
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return _go_duration(int(value) * bare_unit_ns)
    fix = 'write a duration such as "10s", "1m30s" or "500ms"'
    if not isinstance(value, str):
        raise BadValue(f"{value!r} is not a duration", fix)
    text, pos, total = value.strip(), 0, Decimal(0)
    body = text.lstrip("+-")
    if body == "0":
        return "0s"
    while pos < len(body):
        m = _DURATION_PART.match(body, pos)
        if not m:
            raise BadValue(f"{value!r} is not a duration", fix)
        total += Decimal(m.group(1)) * _NS[m.group(2)]
        pos = m.end()
    if not body:
        raise BadValue("the duration is empty", fix)
    return _go_duration(int(total) * (-1 if text.startswith("-") else 1))


def _int(value: Any, *, what: str = "a whole number", example: str = "10", lo: int | None = None,
         hi: int | None = None) -> int | None:
    # patches.go castToInt: flyctl accepts numeric strings ("80") for ports, so do we.
    if value is None:
        return None
    number: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    elif isinstance(value, str) and re.fullmatch(r"\s*-?\d+\s*", value):
        number = int(value)
    if number is None:
        raise BadValue(f"{value!r} is not {what}", f"write {what} without quotes, e.g. {example}")
    if (lo is not None and number < lo) or (hi is not None and number > hi):
        bounds = f"between {lo} and {hi}" if hi is not None else f"of at least {lo}"
        raise BadValue(f"{number} is out of range", f"use {what} {bounds}")
    return number


def _port(value: Any) -> int | None:
    return _int(value, what="a port number", example="8080", lo=1, hi=65535)


def _autostop(value: Any) -> str | None:
    # fly-go MachineAutostop.UnmarshalJSON/UnmarshalText: booleans are the old format, true = "stop".
    if value is None or isinstance(value, bool):
        return None if value is None else ("stop" if value else "off")
    text = value.strip().lower() if isinstance(value, str) else None
    modes = {"off": "off", "false": "off", "stop": "stop", "true": "stop", "suspend": "suspend"}
    if text not in modes:
        raise BadValue(f"{value!r} is not an auto-stop mode", 'use "off", "stop" or "suspend" (or true / false)')
    return modes[text]


def _human_size(value: Any, *, binary: bool, unit: int, what: str, example: str) -> int | None:
    # helpers/units.go ParseSize: a bare integer is already in the target unit; otherwise
    # docker/go-units (RAMInBytes is binary, FromHumanSize is decimal) then divide.
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and re.fullmatch(r"\s*\d+\s*", value):
        return int(value)
    m = _SIZE.match(value.strip()) if isinstance(value, str) else None
    if not m:
        raise BadValue(f"{value!r} is not {what}", f"write it like {example}")
    base = 1024 if binary else 1000
    power = " kmgtp".index((m.group(2) or " ").lower())
    try:
        return int(Decimal(m.group(1)) * base**power) // unit
    except InvalidOperation:
        raise BadValue(f"{value!r} is not {what}", f"write it like {example}") from None


def _memory_mb(value: Any) -> int | None:
    mb = _human_size(value, binary=True, unit=1024**2, what="a memory size", example='"1gb", "512mb" or 1024 (MB)')
    if mb == 0:
        raise BadValue("memory cannot be zero", 'use at least 256 MB, e.g. "256mb"')
    return mb


def _size_gb(value: Any) -> int | None:
    return _human_size(value, binary=False, unit=1000**3, what="a size", example='"10gb" or 10 (GB)')


def _str_list(value: Any) -> Any:
    return [value] if isinstance(value, str) else value  # patches.go stringOrSliceToSlice


def table_list(value: Any) -> Any:
    return [value] if isinstance(value, dict) else value  # patches.go ensureArrayOfMap: [x] or [[x]]


def _env(value: Any) -> Any:
    # patches.go _patchEnv: [env] values are stringified like Go's %v; a list of tables is merged.
    if isinstance(value, list):
        merged: dict[str, Any] = {}
        for item in value:
            merged.update(_env(item))
        return merged
    if not isinstance(value, dict):
        return value
    out = {}
    for key, v in value.items():
        if isinstance(v, (dict, list)):
            raise BadValue("environment values must be plain values", f'write {key} = "value"', (key,))
        out[key] = ("true" if v else "false") if isinstance(v, bool) else str(v)
    return out


def _processes(value: Any) -> Any:
    if isinstance(value, list):  # patches.go patchProcesses: the old [{name, command}] form
        return {str(p.get("name")): str(p.get("command", "")) for p in value if isinstance(p, dict) and "name" in p}
    return value


def concurrency_table(value: Any) -> Any:
    if isinstance(value, str):  # patches.go _patchService: the old "soft,hard" string
        soft, _, hard = value.partition(",")
        if not (soft.strip().isdigit() and hard.strip().isdigit()):
            raise BadValue(f"{value!r} is not a concurrency limit",
                       'write a table: concurrency = { type = "requests", soft_limit = 20, hard_limit = 25 }')
        return {"type": "requests", "soft_limit": int(soft), "hard_limit": int(hard)}
    return value


def _headers(value: Any) -> Any:
    if isinstance(value, list):  # patches.go _patchCheckHeaders: [{name, value}] form
        return {str(h.get("name")): str(h.get("value", "")) for h in value if isinstance(h, dict)}
    return {k: str(v) for k, v in value.items()} if isinstance(value, dict) else value


Int = Annotated[int, BeforeValidator(_int)]
Port = Annotated[int, BeforeValidator(_port)]
Seconds = Annotated[str, BeforeValidator(lambda v: _duration(v, 10**9))]
Millis = Annotated[str, BeforeValidator(lambda v: _duration(v, 10**6))]
Autostop = Annotated[Literal["off", "stop", "suspend"], BeforeValidator(_autostop)]
StrList = Annotated[list[str], BeforeValidator(_str_list)]
Headers = Annotated[dict[str, str], BeforeValidator(_headers)]
NonNegativeInt = Annotated[int, BeforeValidator(lambda v: _int(v, lo=0))]
MemoryMb = Annotated[int, BeforeValidator(_memory_mb)]
SizeGb = Annotated[int, BeforeValidator(_size_gb)]
Env = Annotated[dict[str, str], BeforeValidator(_env)]
ProcessMap = Annotated[dict[str, str], BeforeValidator(_processes)]
T = TypeVar("T")
Tables = Annotated[list[T], BeforeValidator(table_list)]  # a [table] or an [[array]] of tables


def split_command(command: str, key: tuple[str | int, ...]) -> list[str]:
    try:  # flyctl uses google/shlex, a POSIX-style split
        return shlex.split(command)
    except ValueError as exc:
        raise BadValue(f"cannot split the command {command!r} ({exc})", "balance its quotes", key) from None
