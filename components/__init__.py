"""Artifact's org slice as Pulumi ComponentResources. Knows Artifact; never builds an HTTP request.

Exports are lazy (PEP 562): ``components.local_command`` holds a dynamic provider, unpickled on
several threads of the provider process, and a package importing its submodules at import time would
make the import cycle Python reports as a deadlock between threads.
"""

from importlib import import_module
from typing import Any

_EXPORTS = {
    "ConfigError": "config", "SliceConfig": "config", "SliceSecrets": "config", "load_from_pulumi": "config",
    "parse_slice_config": "config", "HostImage": "host_image", "ImageManifest": "host_image", "NfsServer": "nfs",
    "ExecService": "services", "Router": "services", "OrgSlice": "slice", "WorkerPool": "worker_pool",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
