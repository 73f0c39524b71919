"""The Fly client against flysim over real HTTP on loopback."""

from __future__ import annotations

import logging

import pytest

from fly import (
    FlyAuthError,
    FlyClient,
    FlyConfigError,
    FlyConnection,
    FlyNameTaken,
    FlyNotFound,
    FlyWaitTimeout,
    RetryPolicy,
)

FAST_RETRY = RetryPolicy(initial_backoff=0.01, max_backoff=0.05, attempts=8)


def client_for(flysim, token: str | None = None) -> FlyClient:
    connection = FlyConnection.resolve(token=token or flysim.token, api_base_url=flysim.url,
                                       flaps_base_url=flysim.url, environ={})
    return FlyClient(connection, retry=FAST_RETRY)


def machine_config(image: str = "registry.fly.io/demo:1", **extra) -> dict:
    return {"image": image, "guest": {"cpu_kind": "shared", "cpus": 1, "memory_mb": 256}, **extra}


def test_connection_needs_a_token() -> None:
    with pytest.raises(FlyConfigError, match="FLY_API_TOKEN"):
        FlyConnection.resolve(environ={})


def test_connection_reads_flyctl_environment() -> None:
    connection = FlyConnection.resolve(environ={"FLY_API_TOKEN": "abc", "FLY_FLAPS_BASE_URL": "http://127.0.0.1:9/",
                                                "FLY_API_BASE_URL": "http://127.0.0.1:8"})
    assert connection.flaps_base_url == "http://127.0.0.1:9"
    assert connection.api_base_url == "http://127.0.0.1:8"
    assert connection.authorization() == "Bearer abc"
    assert "abc" not in repr(connection) and "abc" not in str(connection)


def test_app_lifecycle(flysim) -> None:
    with client_for(flysim) as fly:
        app = fly.create_app("t-app", "personal")
        assert app.name == "t-app" and app.organization and app.organization.slug == "personal"
        assert fly.get_app("t-app").name == "t-app"
        assert [a.name for a in fly.list_apps("personal")] == ["t-app"]
        with pytest.raises(FlyNameTaken) as exc:
            fly.create_app("t-app", "other-org")
        assert "t-app" in str(exc.value)
        fly.delete_app("t-app")
        assert fly.find_app("t-app") is None
        fly.delete_app("t-app")  # already gone: fine


def test_missing_app_error_names_it(flysim) -> None:
    with client_for(flysim) as fly, pytest.raises(FlyNotFound) as exc:
        fly.get_app("nope-app")
    assert exc.value.status_code == 404
    assert "app nope-app" in str(exc.value) and "GET /v1/apps/nope-app" in str(exc.value)


def test_volume_lifecycle(flysim) -> None:
    with client_for(flysim) as fly:
        fly.create_app("v-app", "personal")
        volume = fly.create_volume("v-app", name="nfsdata", region="syd", size_gb=1)
        assert volume.id.startswith("vol_") and volume.region == "syd" and volume.zone
        assert [v.id for v in fly.list_volumes("v-app")] == [volume.id]
        assert fly.extend_volume("v-app", volume.id, 3).size_gb == 3
        fly.delete_volume("v-app", volume.id)
        assert fly.find_volume("v-app", volume.id) is None


def test_machine_lifecycle_with_wait_and_lease(flysim) -> None:
    with client_for(flysim) as fly:
        fly.create_app("m-app", "personal")
        volume = fly.create_volume("m-app", name="data", region="syd", size_gb=1)
        machine = fly.create_machine("m-app", machine_config(mounts=[{"volume": volume.id, "path": "/data"}]),
                                     name="m-app-0", region="syd")
        fly.wait_machine("m-app", machine.id, "started", timeout=10, instance_id=machine.instance_id)
        assert fly.get_machine("m-app", machine.id).state == "started"
        assert fly.get_volume("m-app", volume.id).attached_machine_id == machine.id

        with fly.lease("m-app", machine.id) as lease:
            current = fly.get_machine("m-app", machine.id)
            updated = fly.update_machine("m-app", machine.id, machine_config("registry.fly.io/demo:2",
                                         mounts=[{"volume": volume.id, "path": "/data"}]),
                                         lease_nonce=lease.nonce, current_version=current.current_version)
        assert updated.id == machine.id and updated.instance_id != machine.instance_id
        fly.wait_machine("m-app", machine.id, "started", timeout=10, instance_id=updated.instance_id)
        assert fly.get_machine("m-app", machine.id).config["image"] == "registry.fly.io/demo:2"

        fly.stop_machine("m-app", machine.id)
        fly.wait_machine("m-app", machine.id, "stopped", timeout=10)
        types = [e.type for e in fly.list_machine_events("m-app", machine.id)]
        assert "launch" in types and "stop" in types

        fly.delete_machine("m-app", machine.id, force=True)
        fly.wait_machine("m-app", machine.id, "destroyed", timeout=10)
        assert fly.find_machine("m-app", machine.id) is None


def test_skip_launch_machine_never_starts(flysim) -> None:
    with client_for(flysim) as fly:
        fly.create_app("s-app", "personal")
        machine = fly.create_machine("s-app", machine_config(), name="s-0", region="syd", skip_launch=True)
        with pytest.raises(FlyWaitTimeout) as exc:
            fly.wait_machine("s-app", machine.id, "started", timeout=1)
        assert "did not reach state 'started'" in str(exc.value)


def test_rejected_token_is_actionable_and_never_shown(flysim, caplog) -> None:
    bad = "not-the-token-5f2e9c1b7a"
    caplog.set_level(logging.DEBUG)
    with client_for(flysim, token=bad) as fly:
        with pytest.raises(FlyAuthError) as exc:
            fly.get_app("whatever")
        assert bad not in repr(fly)
    text = str(exc.value) + repr(exc.value) + caplog.text
    assert "401" in str(exc.value) and "FLY_API_TOKEN" in str(exc.value)
    assert bad not in text and flysim.token not in text


def test_an_unreachable_api_says_what_to_try() -> None:
    import socket

    from fly import FlyConnectionError

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    connection = FlyConnection.resolve(token="t", api_base_url=url, flaps_base_url=url, environ={})
    with FlyClient(connection, retry=RetryPolicy(initial_backoff=0.01, max_backoff=0.02, attempts=2)) as fly, \
            pytest.raises(FlyConnectionError) as exc:
        fly.get_app("any-app")
    message = str(exc.value)
    assert "could not reach the Fly API (ConnectError" in message
    assert "FLY_API_BASE_URL" in message and "run `pulumi up` again" in message


@pytest.mark.parametrize("flaps, api", [("https://api.machines.dev", "https://api.fly.io"),
                                        ("http://127.0.0.1:9", "https://api.fly.io"),
                                        ("https://api.machines.dev", "http://127.0.0.1:8")])
def test_certificates_are_checked_wherever_an_endpoint_is_https(flaps: str, api: str) -> None:
    import ssl

    connection = FlyConnection.resolve(token="abc", api_base_url=api, flaps_base_url=flaps, environ={})
    with FlyClient(connection) as client:
        context = client._http._transport._pool._ssl_context  # httpx keeps it on the connection pool
        assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname


def test_importing_the_client_leaves_httpx_cli_out() -> None:
    """The provider process imports the client on its first call of every run: httpx's command-line
    client (click, rich, pygments) stays out of it, and stays importable for whoever wants it."""
    import subprocess
    import sys
    from pathlib import Path

    probe = ("import sys, fly.client, httpx\n"
             "print(sorted(m for m in ('httpx._main', 'click', 'rich', 'pygments') if m in sys.modules))\n"
             "import httpx._main\n"
             "print(callable(httpx.main), 'httpx._main' in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60,
                          cwd=Path(__file__).resolve().parents[1])
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["[]", "True True"]
