"""Leave a Pulumi Python process without the interpreter's teardown once its work is done.

The engine waits for the program process to exit before it closes the providers, then for each provider
process to exit after its interrupt before it finishes the update. Tearing down the modules the Pulumi
SDK loads (grpc, protobuf, pydantic, httpx) costs CPython 0.15 s to 0.25 s per process on this project,
all of it after the last API call: measured by ``bench`` as part of every ``preview``, ``up`` and
``destroy``. Here, once a process has done everything a normal exit does that anyone could observe
(non-daemon threads joined, ``atexit`` handlers run, streams flushed), it leaves with ``os._exit`` and the
same status. Any other exit (an error, a non-zero status, a thread still running) is left untouched.

The program process also ends quietly when the engine interrupts it (``stop_quietly_on_interrupt``).
"""

from __future__ import annotations

import atexit
import os
import signal
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


def stop_quietly_on_interrupt() -> None:
    """The program process: a SIGINT ends it at once (output flushed, ended by the signal), without Python's
    ``KeyboardInterrupt`` traceback.

    Only the engine interrupts a program (a Ctrl-C at a terminal reaches the CLI alone), and only once it is
    done with it. A cancelled update returns without waiting for the program (deployment_executor.go waits
    for it only when the update neither failed nor was cancelled), which still waits on its RegisterResource
    calls; the CLI then closes the language host with SIGINT to the host's whole process group
    (plugin.go, ``cmdutil.InterruptChildren``), and the host runs the program in that group (the v3.259
    host also interrupts the program itself when its run is cancelled). Python's default answer is a
    traceback on stderr, which the CLI shows in the stack's diagnostics whenever it comes before the display
    ends: under load, often. Nothing is lost by stopping: the engine has recorded what the update did."""
    if threading.current_thread() is not threading.main_thread():
        return  # signal handlers belong to the main thread (a program run inline in another process)
    signal.signal(signal.SIGINT, _stop)


def _stop(signum: int, _frame: Any) -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError, RuntimeError):  # RuntimeError: the signal came in the middle of a flush
            pass
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)
