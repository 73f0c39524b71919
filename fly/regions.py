"""Fly.io's regions, to check a region before any API call (a typo would otherwise surface as an API
400 after other resources were already created).

Source: the region table of https://fly.io/docs/reference/regions/ (35 regions, as listed in 2024).
The live list is `fly platform regions`, i.e. the Machines API's ``GET /v1/platform/regions``, which
also marks deprecated regions; a region added since is refused here with the whole list in the
message, and this table is the one place to update.
"""

from __future__ import annotations

import difflib
from typing import Annotated

from pydantic import AfterValidator

REGIONS: dict[str, str] = {
    "ams": "Amsterdam, Netherlands", "arn": "Stockholm, Sweden", "atl": "Atlanta, Georgia (US)",
    "bog": "Bogotá, Colombia", "bom": "Mumbai, India", "bos": "Boston, Massachusetts (US)",
    "cdg": "Paris, France", "den": "Denver, Colorado (US)", "dfw": "Dallas, Texas (US)",
    "ewr": "Secaucus, NJ (US)", "eze": "Ezeiza, Argentina", "fra": "Frankfurt, Germany",
    "gdl": "Guadalajara, Mexico", "gig": "Rio de Janeiro, Brazil", "gru": "Sao Paulo, Brazil",
    "hkg": "Hong Kong, Hong Kong", "iad": "Ashburn, Virginia (US)", "jnb": "Johannesburg, South Africa",
    "lax": "Los Angeles, California (US)", "lhr": "London, United Kingdom", "mad": "Madrid, Spain",
    "mia": "Miami, Florida (US)", "nrt": "Tokyo, Japan", "ord": "Chicago, Illinois (US)",
    "otp": "Bucharest, Romania", "phx": "Phoenix, Arizona (US)", "qro": "Querétaro, Mexico",
    "scl": "Santiago, Chile", "sea": "Seattle, Washington (US)", "sin": "Singapore, Singapore",
    "sjc": "San Jose, California (US)", "syd": "Sydney, Australia", "waw": "Warsaw, Poland",
    "yul": "Montreal, Canada", "yyz": "Toronto, Canada",
}


def region_problem(value: object) -> str | None:
    """None for a known region code; otherwise what is wrong, in words, with the closest codes."""
    if not isinstance(value, str) or not value.strip():
        return "is not a Fly region code (three letters such as syd or fra)"
    code = value.strip().lower()
    if code in REGIONS and code == value:
        return None
    if code in REGIONS and value.strip() != value:
        return f"has spaces around it; use {code!r}"
    if code in REGIONS:
        return f"is written {value!r}; Fly region codes are lowercase: use {code!r}"
    hint = suggest_region(value) or f" (Fly's regions: {', '.join(REGIONS)})"
    return f"is not a Fly region{hint}"


def suggest_region(value: str) -> str:
    """A ' (did you mean ...?)' hint: closest codes by spelling, or codes whose city matches."""
    text = value.strip().lower()
    by_city = [code for code, place in REGIONS.items() if text and len(text) > 3 and text in place.lower()]
    close = by_city or difflib.get_close_matches(text, REGIONS, n=3, cutoff=0.5)
    if not close:
        return ""
    named = " or ".join(f"{c} ({REGIONS[c]})" for c in close)
    return f" (did you mean {named}?)"


def _known_region(value: str) -> str:
    problem = region_problem(value)
    if problem:
        raise ValueError(f"{value!r} {problem}")
    return value


# A pydantic field type for a region code: refused with the same words and hints everywhere.
FlyRegion = Annotated[str, AfterValidator(_known_region)]
