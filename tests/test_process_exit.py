"""fly/providers/process_exit.py: a Pulumi Python process that is done leaves without the interpreter's
teardown, and with the status, output and exit handlers a normal exit would have had.

Each case runs a real interpreter: the program's side as the SDK's language host runs it (a file named
``pulumi-language-python-exec`` ending in ``sys.exit(code)``), the provider's side as ``python -m`` of a
package's ``__main__`` (what ``python -m pulumi.dynamic`` is)."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from fly.providers import process_exit

REPO = Path(__file__).resolve().parents[1]


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=60,
                          env={"PYTHONPATH": f"{REPO}:{cwd}", "PATH": "/usr/bin:/bin"})


def _runner(tmp_path: Path, name: str, body: str) -> Path:
    script = tmp_path / name
    script.write_text(textwrap.dedent("""\
        import atexit, sys, threading
        from fly.providers.process_exit import skip_teardown_in_program_process
        atexit.register(lambda: print("exit handler ran", flush=True))
        skip_teardown_in_program_process()
        print("buffered output", end="")  # not flushed by the program: the exit must flush it
        """) + textwrap.dedent(body))
    return script


@pytest.mark.parametrize("status", [0, None])
def test_the_runners_successful_exit_keeps_output_handlers_and_status(tmp_path: Path, status: int | None) -> None:
    script = _runner(tmp_path, process_exit.PROGRAM_RUNNER, f"sys.exit({status})\n")
    done = _run([str(script)], tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "buffered outputexit handler ran\n"


@pytest.mark.parametrize("status", [1, 32])
def test_a_failed_program_keeps_its_status(tmp_path: Path, status: int) -> None:
    """The engine reads a non-zero status as "the program failed": it must never become 0."""
    script = _runner(tmp_path, process_exit.PROGRAM_RUNNER, f"sys.exit({status})\n")
    done = _run([str(script)], tmp_path)
    assert done.returncode == status
    assert "exit handler ran" in done.stdout


def test_sys_exit_elsewhere_unwinds_as_always(tmp_path: Path) -> None:
    """Only the runner's own last call takes the short way: a ``sys.exit(0)`` in other code still raises
    SystemExit, so ``finally`` blocks run and a caller can catch it."""
    script = _runner(tmp_path, "program.py", """\
        try:
            sys.exit(0)
        except SystemExit:
            print(" caught", end="")
        try:
            sys.exit(0)
        finally:
            print(" finally ran", flush=True)
        """)
    done = _run([str(script)], tmp_path)
    assert done.returncode == 0
    assert done.stdout == "buffered output caught finally ran\nexit handler ran\n"


def test_a_thread_still_running_is_waited_for(tmp_path: Path) -> None:
    script = _runner(tmp_path, process_exit.PROGRAM_RUNNER, """\
        import time
        def late():
            time.sleep(0.3)
            print(" thread finished", flush=True)
        threading.Thread(target=late).start()
        sys.exit(0)
        """)
    done = _run([str(script)], tmp_path)
    assert done.returncode == 0
    assert "thread finished" in done.stdout


@pytest.mark.parametrize("quiet", [True, False], ids=["stop_quietly_on_interrupt", "python-default"])
def test_the_engines_interrupt_ends_the_program_without_a_traceback(tmp_path: Path, quiet: bool) -> None:
    """A cancelled update closes the language host with SIGINT to its process group while the program still
    waits in its event loop (as the runner's ``run_until_complete`` does): the program ends at once, its
    output flushed, and prints no ``KeyboardInterrupt``. Python's default, for contrast, does print one."""
    script = tmp_path / process_exit.PROGRAM_RUNNER
    script.write_text(textwrap.dedent(f"""\
        import asyncio, sys
        from fly.providers.process_exit import stop_quietly_on_interrupt
        if {quiet}:
            stop_quietly_on_interrupt()
        print("buffered output", end="")  # not flushed: the interrupt must not lose it
        print("ready", file=sys.stderr, flush=True)
        asyncio.new_event_loop().run_until_complete(asyncio.sleep(60))
        """))
    proc = subprocess.Popen([sys.executable, str(script)], cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    try:
        assert proc.stderr is not None and proc.stderr.readline() == "ready\n"
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=30)
    finally:
        proc.kill()
    if quiet:
        assert proc.returncode == -signal.SIGINT, stderr
        assert stderr == "" and stdout == "buffered output"
    else:
        assert "KeyboardInterrupt" in stderr


def _provider_main(tmp_path: Path, body: str) -> None:
    package = tmp_path / "fakeprovider"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "__main__.py").write_text(textwrap.dedent("""\
        import atexit, sys
        from fly.providers import process_exit
        process_exit.PROVIDER_MAIN = __spec__.name  # stands in for pulumi.dynamic.__main__
        atexit.register(lambda: print("exit handler ran", flush=True))
        process_exit.skip_teardown_in_provider_process()
        process_exit.skip_teardown_in_provider_process()  # once per provider; registered once
        print("buffered output", end="")
        """) + textwrap.dedent(body))


def test_a_provider_process_leaves_cleanly_after_its_main_returns(tmp_path: Path) -> None:
    _provider_main(tmp_path, "")
    done = _run(["-m", "fakeprovider"], tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "buffered outputexit handler ran\n"


def test_a_provider_process_that_fails_keeps_its_status_and_traceback(tmp_path: Path) -> None:
    _provider_main(tmp_path, "raise RuntimeError('the provider broke')\n")
    done = _run(["-m", "fakeprovider"], tmp_path)
    assert done.returncode == 1
    assert "RuntimeError: the provider broke" in done.stderr
    assert "exit handler ran" in done.stdout


def test_nothing_changes_outside_a_provider_process() -> None:
    """Providers called in-process (as these tests do) leave the caller's exit alone."""
    assert not process_exit.in_provider_process()
    process_exit.skip_teardown_in_provider_process()
    assert "provider" not in process_exit._installed


def test_the_names_are_those_of_the_engine_this_project_runs(pulumi_bin: Path) -> None:
    """If a later SDK renamed its runner or its provider module, the short way would silently stop
    applying: these are the files the bootstrap installs and the engine starts."""
    runner = pulumi_bin / process_exit.PROGRAM_RUNNER
    assert runner.is_file()
    assert runner.read_text().rstrip().endswith("sys.exit(exit_code)")
    shim = (pulumi_bin / "pulumi-resource-pulumi-python").read_text()
    assert f"-m {process_exit.PROVIDER_MAIN.removesuffix('.__main__')} " in shim
    import importlib.util
    assert importlib.util.find_spec(process_exit.PROVIDER_MAIN) is not None  # (importing it would serve)
