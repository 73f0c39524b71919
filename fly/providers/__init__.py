"""Pulumi dynamic providers for Fly resources (importable, so dill pickles them by reference)."""

from .app import App, AppProvider
from .connection_args import FlyConnectionArgs
from .machine import Machine, MachineProvider
from .volume import Volume, VolumeProvider

__all__ = ["App", "AppProvider", "FlyConnectionArgs", "Machine", "MachineProvider", "Volume", "VolumeProvider"]
