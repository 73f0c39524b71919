"""Fly's regions, as superfly/docs `reference/regions.html.markerb` lists them (code, location, gateway)."""

from __future__ import annotations

REGIONS: tuple[tuple[str, str, bool], ...] = (
    ("ams", "Amsterdam, Netherlands", True),
    ("arn", "Stockholm, Sweden", True),
    ("bom", "Mumbai, India", True),
    ("cdg", "Paris, France", True),
    ("dfw", "Dallas, Texas (US)", True),
    ("ewr", "Secaucus, NJ (US)", True),
    ("fra", "Frankfurt, Germany", True),
    ("gru", "Sao Paulo, Brazil", False),
    ("iad", "Ashburn, Virginia (US)", True),
    ("jnb", "Johannesburg, South Africa", False),
    ("lax", "Los Angeles, California (US)", True),
    ("lhr", "London, United Kingdom", True),
    ("nrt", "Tokyo, Japan", True),
    ("ord", "Chicago, Illinois (US)", True),
    ("sin", "Singapore, Singapore", True),
    ("sjc", "San Jose, California (US)", True),
    ("syd", "Sydney, Australia", True),
    ("yyz", "Toronto, Canada", True),
)
