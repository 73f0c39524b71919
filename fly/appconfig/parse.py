"""Reading fly.toml: TOML syntax, then the schema; every problem becomes one FlyTomlError that names
the file (and line), the key path, the problem in words and the fix."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any, Iterable

from pydantic import ValidationError

from .errors import DOCS, BadValue, FlyTomlError, key_lines, line_of
from .schema import FlyToml

def _key_path(loc: Iterable[str | int]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _describe(err: dict[str, Any]) -> tuple[str, str]:
    kind, value, name = err["type"], err.get("input"), str(next(
        (p for p in reversed(err["loc"]) if isinstance(p, str)), "value"))
    if kind == "missing":
        section = _key_path(err["loc"][:-1])
        return "is required", f"add {name} = ... to {f'[{section}]' if section else 'the top level'}"
    if kind.startswith("bool"):
        return f"{value!r} is not true or false", f"write {name} = true or {name} = false, without quotes"
    if kind.startswith("string"):
        return f"{value!r} is not a string", f'quote it: {name} = "..."'
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return f"{value!r} is not a table", f"write it as a [{name}] table"
    if kind == "list_type":
        return f"{value!r} is not an array", f'write an array: {name} = ["..."]'
    if kind == "literal_error":
        return f"{value!r} is not allowed", f"use one of {err['ctx']['expected']}"
    return err["msg"], f"see {DOCS}"


def _as_fly_toml_error(exc: ValidationError, source: str, lines: dict[str, int]) -> FlyTomlError:
    issues = []
    for err in exc.errors():
        bad = (err.get("ctx") or {}).get("error")
        loc = (*err["loc"], *bad.key) if isinstance(bad, BadValue) else err["loc"]
        problem, fix = (bad.problem, bad.fix) if isinstance(bad, BadValue) else _describe(err)
        key = _key_path(loc) or None
        issues.append((key, problem, fix, line_of(lines, key)))
    first, *more = issues
    return FlyTomlError(source, *first[:3], line=first[3], more=more)


def parse_fly_toml(text: str, *, source: str = "fly.toml") -> FlyToml:
    """Parse and validate fly.toml text; every problem is a FlyTomlError naming ``source``."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        m = re.search(r"\(at line (\d+), column \d+\)", str(exc))
        reason = re.sub(r"\s*\(at line.*\)$", "", str(exc)) or str(exc)
        raise FlyTomlError(source, None, f"invalid TOML: {reason}",
                           'fix the syntax on that line (quote strings, use [table] and [[array]] headers)',
                           line=int(m.group(1)) if m else None) from None
    lines = key_lines(text)
    try:
        config = FlyToml.model_validate(raw)
    except ValidationError as exc:
        raise _as_fly_toml_error(exc, source, lines) from None
    except Exception as exc:  # a shape no validator foresaw: still this file's fault, never a traceback
        raise FlyTomlError(source, None, f"cannot be read as a fly.toml ({type(exc).__name__}: {exc})",
                           f"compare the file with {DOCS}") from None
    config._source, config._lines = source, lines
    return config


def load_fly_toml(path: str | Path, *, source: str | None = None) -> FlyToml:
    """Read and validate a fly.toml; [[files]] local_path is resolved against its directory.
    ``source`` is how messages name the file (default: the path)."""
    path = Path(path)
    name = source or str(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise FlyTomlError(name, None, f"cannot read the file ({exc.strerror or exc})",
                           "check the path to fly.toml") from None
    try:
        text = data.decode("utf-8-sig")  # an editor's byte order mark is not a mistake
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise FlyTomlError(name, None, f"is not valid UTF-8 (byte 0x{data[exc.start]:02x} at offset {exc.start})",
                           "save the file as UTF-8 (TOML files must be UTF-8)", line=line) from None
    config = parse_fly_toml(text, source=name)
    config._base_dir = path.parent
    return config
