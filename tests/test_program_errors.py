"""How the program (``__main__.py``) reports what goes wrong before any resource: always a
``pulumi.RunError`` (Pulumi prints its message alone, no traceback), on one line, never a credential.
Run in-process on the SDK's mocks, with the config set as the engine sets it."""

from __future__ import annotations

import asyncio
import runpy
from pathlib import Path
from typing import Any, Iterator

import pulumi
import pytest

import components.deploy
from tests.badinput.configs import GOOD

MAIN = Path(__file__).resolve().parent.parent / "__main__.py"


class _NoResources(pulumi.runtime.Mocks):
    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        raise AssertionError(f"resource {args.name} registered: the program went past its input checks")

    def call(self, args: pulumi.runtime.MockCallArgs) -> dict[str, Any]:
        raise AssertionError("no call expected")


@pytest.fixture
def run_program() -> Iterator[Any]:
    # The SDK's mocks run on the current event loop; tests that ran before (anyio, the MCP client) may
    # have left none set, so give each run a loop of its own.
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)

    def run(config: dict[str, str], secret_keys: list[str] | None = None) -> str:
        pulumi.runtime.set_mocks(_NoResources(), project="artifact-slice", stack="org1", preview=True)
        pulumi.runtime.set_all_config(config, secret_keys or [])
        with pytest.raises(pulumi.RunError) as exc:
            runpy.run_path(str(MAIN), run_name="__main__")
        message = str(exc.value)
        assert "\n" not in message and "Traceback" not in message
        return message

    yield run
    pulumi.runtime.set_all_config({}, [])
    asyncio.set_event_loop(None)
    loop.close()


def test_bad_config_is_a_run_error(run_program) -> None:
    message = run_program({**GOOD, "artifact-slice:primaryRegion": "zzz"})
    assert message.startswith("invalid stack configuration: artifact-slice:primaryRegion (got 'zzz')")


def test_bad_toml_is_a_run_error_naming_the_file(run_program, monkeypatch, tmp_path: Path) -> None:
    import shutil

    deploy = tmp_path / "deploy"
    shutil.copytree(components.deploy.DEPLOY_DIR, deploy)
    (deploy / "fly.nfs.toml").write_bytes(b"app = \"x\"\n\xff\n")
    monkeypatch.setattr(components.deploy, "DEPLOY_DIR", deploy)
    message = run_program(GOOD)
    assert message.startswith("deploy/fly.nfs.toml:2: is not valid UTF-8")


def test_an_unexpected_error_is_one_line_and_says_it_is_a_bug(run_program, monkeypatch) -> None:
    def broken(config: Any) -> None:
        raise KeyError("worker-pool\nsecond line")

    monkeypatch.setattr(components.deploy, "preflight", broken)
    message = run_program(GOOD)
    assert message.startswith("the program failed while reading its configuration (KeyError: ")
    assert message.endswith("this is a bug: please report it with this line")


def test_an_unexpected_error_never_repeats_a_credential(run_program, monkeypatch) -> None:
    def leaky(config: Any) -> None:
        raise RuntimeError("token FlyV1 fm" "2_abcdefghijklmnopqrstuvwx rejected")

    monkeypatch.setattr(components.deploy, "preflight", leaky)
    message = run_program(GOOD)
    assert "fm2_" not in message and "details withheld" in message
