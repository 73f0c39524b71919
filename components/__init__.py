"""Artifact's org slice as Pulumi ComponentResources. Knows Artifact; never builds an HTTP request."""

from .config import ConfigError, SliceConfig, load_from_pulumi, parse_slice_config
from .nfs import NfsServer

__all__ = ["ConfigError", "NfsServer", "SliceConfig", "load_from_pulumi", "parse_slice_config"]
