"""fly.toml -> Fly Machines API machine config, the way flyctl builds it.

Machines created from here must look flyctl-deployed (``fly status``, ``fly deploy`` and the Fly
dashboard key off the same metadata, env and service shapes), so this package mirrors flyctl's
``internal/appconfig``, one module per concern: ``values`` (patches.go casts, fly-go Duration and
Autostop, go-units sizes), ``schema`` (config.go, service.go, toplevelcheck.go, processgroups.go),
``parse`` (reading a file and its error messages, ``errors``) and ``machines`` (machines.go and
deploy's machines_releasecommand.go), plus fly-go's ``machine_types.go`` for presets and wire
formats. Where flyctl and the OpenAPI schema disagree (``autostop``), flyctl wins and the spot is
commented.

Exports are lazy (PEP 562): the dynamic provider process unpickles on several threads, and a package
``__init__`` that imports its own submodules makes the import cycle Python reports as a deadlock.
"""

from importlib import import_module
from typing import Any

_EXPORTS = {
    "FlyTomlError": "errors", "FlyToml": "schema", "load_fly_toml": "parse", "parse_fly_toml": "parse",
    "auto_stop_mode": "machines", "machine_config": "machines", "release_command_config": "machines",
}
# Machine-event helpers live with the machine models; kept importable from here for older callers.
_ELSEWHERE = {"release_exit_code": "fly.models"}
__all__ = sorted([*_EXPORTS, *_ELSEWHERE])


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    if name in _ELSEWHERE:
        return getattr(import_module(_ELSEWHERE[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
