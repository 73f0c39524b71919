"""flysim: a local simulator of the Fly.io Machines REST API and a GraphQL subset."""

from .sim import Sim, SimConfig

__all__ = ["Sim", "SimConfig", "create_app"]


def create_app(*args, **kwargs):  # type: ignore[no-untyped-def]
    from .app import create_app as _create_app

    return _create_app(*args, **kwargs)
