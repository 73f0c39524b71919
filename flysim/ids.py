"""Identifier generators shaped like Fly's real ones.

Shapes matter because clients sometimes validate or pattern-match them
(e.g. a machine id is 14 lowercase hex chars, a version is a 26-char ULID).
"""

from __future__ import annotations

import os
import secrets
import string
import time

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_ALNUM_LOWER = string.ascii_lowercase + string.digits

_ADJECTIVES = [
    "aged", "ancient", "autumn", "billowing", "bitter", "black", "blue", "bold",
    "broad", "broken", "calm", "cold", "cool", "crimson", "curly", "damp", "dark",
    "dawn", "delicate", "divine", "dry", "empty", "falling", "fancy", "flat",
    "floral", "fragrant", "frosty", "gentle", "green", "hidden", "holy", "icy",
    "jolly", "late", "lingering", "little", "lively", "long", "lucky", "misty",
    "morning", "muddy", "nameless", "noisy", "odd", "old", "orange", "patient",
    "plain", "polished", "proud", "purple", "quiet", "rapid", "raspy", "red",
]
_NOUNS = [
    "art", "band", "bar", "base", "bird", "block", "boat", "bonus", "bread",
    "breeze", "brook", "bush", "butterfly", "cake", "cell", "cherry", "cloud",
    "credit", "darkness", "dew", "disk", "dream", "dust", "feather", "field",
    "fire", "firefly", "flower", "fog", "forest", "frog", "frost", "glade",
    "glitter", "grass", "hall", "hat", "haze", "heart", "hill", "king", "lab",
    "lake", "leaf", "limit", "math", "meadow", "mode", "moon", "morning",
    "mountain", "mouse", "mud", "night", "paper", "pine", "poetry", "pond",
]


def machine_id() -> str:
    """14 lowercase hex characters, like `3d8d413b29d089`."""
    return secrets.token_hex(7)


def volume_id() -> str:
    """`vol_` followed by 16 lowercase alphanumerics, like Fly's volume ids."""
    return "vol_" + "".join(secrets.choice(_ALNUM_LOWER) for _ in range(16))


def zone() -> str:
    """A 4-hex-char zone inside a region (Fly shows zones such as `a8c3`)."""
    return secrets.token_hex(2)


def ulid(ts_ms: int | None = None) -> str:
    """A 26-character Crockford base32 ULID (48-bit time + 80 bits randomness).

    Fly machine versions (`instance_id`) and event ids are ULIDs.
    """
    if ts_ms is None:
        ts_ms = int(time.time() * 1000)
    value = (ts_ms & ((1 << 48) - 1)) << 80 | int.from_bytes(os.urandom(10), "big")
    out = []
    for _ in range(26):
        out.append(_CROCKFORD[value & 31])
        value >>= 5
    return "".join(reversed(out))


def machine_name() -> str:
    """A generated machine name such as `misty-pond-4821` (Fly's style)."""
    return f"{secrets.choice(_ADJECTIVES)}-{secrets.choice(_NOUNS)}-{secrets.randbelow(9000) + 1000}"


def private_ip() -> str:
    """A 6PN-looking IPv6 address in fdaa::/16."""
    parts = [secrets.token_hex(2) for _ in range(5)]
    return "fdaa:0:" + ":".join(parts) + ":2"


def opaque(prefix: str = "", nbytes: int = 12) -> str:
    """Random opaque id (not a secret), e.g. for org/app/token ids."""
    return prefix + secrets.token_hex(nbytes)


def token_value() -> str:
    """A random bearer token, shaped like Fly's macaroon tokens (`fm2_...`).

    These are secrets: they are returned exactly once and only their sha256 is stored.
    """
    return "fm2_" + secrets.token_urlsafe(48)


def short_id(nbytes: int = 8) -> str:
    return secrets.token_hex(nbytes)
