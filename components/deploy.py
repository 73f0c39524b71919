"""The services' fly.toml files (in deploy/), the source of truth for their machine configs."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from fly.appconfig import FlyToml, load_fly_toml

DEPLOY_DIR = Path(__file__).resolve().parent.parent / "deploy"


@lru_cache(maxsize=None)
def fly_toml(service: str) -> FlyToml:
    """Parsed and validated at program start, so a bad toml fails the preview before any API call."""
    return load_fly_toml(DEPLOY_DIR / f"fly.{service}.toml")


def default_image(service: str) -> str:
    toml = fly_toml(service)
    image = toml.build.image if toml.build else None
    if not image:
        raise ValueError(f"deploy/fly.{service}.toml has no [build] image; set one or the stack's image config")
    return image
