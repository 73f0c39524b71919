"""Leave a Pulumi Python process without the interpreter's teardown once its work is done.

The engine waits for the program process to exit before it closes the providers, then for each provider
process to exit after its interrupt before it finishes the update. Tearing down the modules the Pulumi
SDK loads (grpc, protobuf, pydantic, httpx) costs CPython 0.15 s to 0.25 s per process on this project,
all of it after the last API call: measured by ``bench`` as part of every ``preview``, ``up`` and
``destroy``. Here, once a process has done everything a normal exit does that anyone could observe
(non-daemon threads joined, ``atexit`` handlers run, streams flushed), it leaves with ``os._exit`` and the
same status. Any other exit (an error, a non-zero status, a thread still running) is left untouched.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
from pathlib import Path
from typing import Any, NoReturn

# The file the SDK's language host runs, whose last statement is ``sys.exit(exit_code)``.
PROGRAM_RUNNER = "pulumi-language-python-exec"
# The module the SDK's dynamic provider shim runs (``python -m pulumi.dynamic``).
PROVIDER_MAIN = "pulumi.dynamic.__main__"

_installed: set[str] = set()
_lock = threading.Lock()


def _others_running() -> bool:
    main = threading.main_thread()
    return any(t is not main and t.is_alive() and not t.daemon for t in threading.enumerate())


def _failed() -> bool:
    """An uncaught exception was reported: the interpreter's own exit carries its status."""
    return getattr(sys, "last_exc", None) is not None or getattr(sys, "last_value", None) is not None


def _leave() -> NoReturn:
    atexit._run_exitfuncs()  # what a normal exit runs before the teardown (logging's flush among them)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(0)


def in_provider_process() -> bool:
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    return getattr(spec, "name", None) == PROVIDER_MAIN


def skip_teardown_in_provider_process() -> None:
    """Called by the providers on first use; does nothing outside a ``pulumi.dynamic`` process (a test
    calling a provider in-process keeps its own exit)."""
    if not in_provider_process():
        return
    with _lock:
        if "provider" in _installed:
            return
        _installed.add("provider")
    atexit.register(_provider_exit)


def _provider_exit() -> None:
    # Registered after the SDK's own handlers, so it runs first: run the others, then leave.
    if _failed() or _others_running():
        return
    atexit.unregister(_provider_exit)
    _leave()


def skip_teardown_in_program_process() -> None:
    """Called by the program: the runner's final ``sys.exit(0)`` leaves at once; any other status, or a
    ``sys.exit`` from anywhere else, behaves as it always does."""
    with _lock:
        if "program" in _installed:
            return
        _installed.add("program")
    original = sys.exit

    def exit_(status: Any = None) -> NoReturn:
        caller = Path(sys._getframe(1).f_code.co_filename).name
        if status in (None, 0) and caller == PROGRAM_RUNNER and not _failed() and not _others_running():
            _leave()
        original(status)
        raise AssertionError("unreachable")  # sys.exit raises

    sys.exit = exit_
