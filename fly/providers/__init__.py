"""Pulumi dynamic providers for Fly resources (importable, so dill pickles them by reference).

Exports are lazy (PEP 562) on purpose: the dynamic provider process unpickles providers on several
gRPC threads at once, and a package ``__init__`` that imports its own submodules makes the
child -> parent -> child import cycle that Python's import locks report as a deadlock between threads.
"""

from importlib import import_module
from typing import Any

_EXPORTS = {
    "FlyProvider": "base", "FlyResource": "base",
    "App": "app", "AppProvider": "app", "AppSecrets": "app_extras", "AppSecretsProvider": "app_extras",
    "Certificate": "app_extras", "IpAddress": "app_extras", "IpAddressProvider": "app_extras",
    "FlyConnectionArgs": "connection_args", "connection_in_scope": "connection_args",
    "inherit_connection": "connection_args", "Machine": "machine", "MachineProvider": "machine",
    "ExecCheck": "machine_ops", "ExecCheckProvider": "machine_ops", "MachineFile": "machine_ops",
    "MachineSweeper": "machine_ops", "ReleaseCommand": "machine_ops", "ReleaseCommandProvider": "machine_ops",
    "Organization": "org", "OrgToken": "org", "OrgTokenProvider": "org", "Volume": "volume",
    "VolumeProvider": "volume",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
