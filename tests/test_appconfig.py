"""fly.toml -> machine config, checked against flyctl's behaviour and Fly's OpenAPI schema."""

from __future__ import annotations

import copy
import json
import shlex
from pathlib import Path
from typing import Any

import pytest

from fly.appconfig import (
    FlyTomlError, auto_stop_mode, load_fly_toml, machine_config, parse_fly_toml, release_command_config,
)
from fly.models import MachineEvent, release_exit_code
from tests.reference import fly_reference

SPEC = fly_reference("machines-openapi.json")

WEB = """
app = "demo"
primary_region = "ams"
kill_signal = "SIGINT"
kill_timeout = 5

[build]
  image = "registry.fly.io/demo:v1"

[env]
  PORT = 8080
  DEBUG = true

[processes]
  app = "bin/server --port 8080"
  worker = "bin/worker --queue 'high prio'"

[deploy]
  release_command = "bin/migrate --to 'latest stable'"
  strategy = "rolling"

[[mounts]]
  source = "data"
  destination = "/data"
  initial_size = "10gb"
  processes = ["app"]

[http_service]
  internal_port = 8080
  force_https = true
  auto_stop_machines = 'suspend'
  auto_start_machines = true
  min_machines_running = 1
  processes = ["app"]
  [http_service.concurrency]
    type = "requests"
    soft_limit = 20
    hard_limit = 25
  [[http_service.checks]]
    interval = "15s"
    timeout = 2000
    grace_period = "10s"
    method = "GET"
    path = "/health"
    headers = { X-Check = "1" }

[[services]]
  protocol = "tcp"
  internal_port = 9000
  processes = ["worker"]
  auto_stop_machines = "suspend"
  concurrency = "10,20"
  [[services.ports]]
    port = "9000"
    handlers = ["tls"]
  [[services.tcp_checks]]
    interval = "30s"
    timeout = "5s"

[checks.alive]
  type = "http"
  path = "/alive"
  method = "get"
  interval = "1m30s"
  processes = ["app"]

[checks.worker_tcp]
  type = "tcp"
  port = 9000
  processes = ["worker"]

[[vm]]
  size = "shared-cpu-2x"
  memory = "1gb"

[[vm]]
  size = "performance-2x"
  processes = ["worker"]

[[restart]]
  policy = "on-failure"
  retries = 3
  processes = ["worker"]

[[metrics]]
  port = 9091
  path = "/metrics"

[[statics]]
  guest_path = "/app/public"
  url_prefix = "/static"

[[files]]
  guest_path = "/etc/app.conf"
  raw_value = "key=value"

[unknown_section]
  anything = "goes"
"""


@pytest.fixture
def web():
    return parse_fly_toml(WEB)


def config_for(text: str, **kwargs: Any) -> dict[str, Any]:
    return machine_config(parse_fly_toml(text), image="img:1", **kwargs)


# ---- services, autostop ----

def test_http_service_keeps_suspend(web):
    config = machine_config(web, image="img:1", mounts={"data": "vol_123"})
    (service,) = config["services"]
    assert service["autostop"] == "suspend"
    assert service["autostart"] is True and service["min_machines_running"] == 1
    assert service["protocol"] == "tcp" and service["internal_port"] == 8080
    assert service["ports"] == [{"port": 80, "handlers": ["http"], "force_https": True},
                                {"port": 443, "handlers": ["http", "tls"]}]
    assert service["concurrency"] == {"type": "requests", "soft_limit": 20, "hard_limit": 25}
    assert service["checks"] == [{"type": "http", "interval": "15s", "timeout": "2s", "grace_period": "10s",
                                  "method": "GET", "path": "/health",
                                  "headers": [{"name": "X-Check", "values": ["1"]}]}]
    assert auto_stop_mode(web) == "suspend"
    assert auto_stop_mode(web, "worker") == "suspend"


@pytest.mark.parametrize("value, mode, wire", [
    ("true", "stop", True), ("false", "off", False), ('"stop"', "stop", True), ('"off"', "off", False),
    ('"suspend"', "suspend", "suspend"),
])
def test_autostop_values_are_serialised_like_flyctl(value, mode, wire):
    text = f"[http_service]\ninternal_port = 8080\nauto_stop_machines = {value}\n"
    assert auto_stop_mode(parse_fly_toml(text)) == mode
    assert config_for(text)["services"][0]["autostop"] == wire


def test_auto_stop_mode_defaults_to_off_and_rejects_disagreement():
    assert auto_stop_mode(parse_fly_toml('app = "x"')) == "off"
    assert auto_stop_mode(parse_fly_toml("[http_service]\ninternal_port = 80\n")) == "off"
    mixed = parse_fly_toml("""
[http_service]
internal_port = 80
auto_stop_machines = "suspend"
[[services]]
internal_port = 81
auto_stop_machines = "stop"
[[services.ports]]
port = 81
""")
    with pytest.raises(FlyTomlError, match="disagree"):
        auto_stop_mode(mixed)


def test_services_follow_their_process_group(web):
    worker = machine_config(web, image="img:1", process_group="worker")
    (service,) = worker["services"]
    assert service == {"protocol": "tcp", "internal_port": 9000, "autostop": "suspend",
                       "ports": [{"port": 9000, "handlers": ["tls"]}],
                       "checks": [{"type": "tcp", "interval": "30s", "timeout": "5s"}],
                       "concurrency": {"type": "requests", "soft_limit": 10, "hard_limit": 20}}
    assert "mounts" not in worker  # the [[mounts]] entry names only "app"


def test_sections_without_processes_serve_only_the_default_group():
    toml = parse_fly_toml("""
[processes]
app = "a"
worker = "w"
[[services]]
internal_port = 80
[[services.ports]]
port = 80
handlers = ["http"]
""")
    assert len(machine_config(toml, image="i")["services"]) == 1
    assert "services" not in machine_config(toml, image="i", process_group="worker")


# ---- mounts ----

def test_mount_maps_volume_name_to_id(web):
    config = machine_config(web, image="img:1", mounts={"data": "vol_123"})
    assert config["mounts"] == [{"volume": "vol_123", "path": "/data", "name": "data"}]
    assert web.mounts[0].initial_size == 10


def test_mount_without_volume_id_names_the_volume(web):
    with pytest.raises(FlyTomlError) as err:
        machine_config(web, image="img:1", mounts={"other": "vol_9"})
    message = str(err.value)
    assert "'data'" in message and "mounts[0].source" in message and "fly.toml" in message
    assert "mounts={'data':" in message


def test_mount_auto_extend_and_one_volume_per_machine():
    text = """
[[mounts]]
source = "data"
destination = "/data"
auto_extend_size_threshold = 80
auto_extend_size_increment = "1GB"
auto_extend_size_limit = "10GB"
"""
    assert config_for(text, mounts={"data": "vol_1"})["mounts"] == [
        {"volume": "vol_1", "path": "/data", "name": "data", "extend_threshold_percent": 80, "add_size_gb": 1,
         "size_gb_limit": 10}]
    two = text + '[[mounts]]\nsource = "logs"\ndestination = "/logs"\n'
    with pytest.raises(FlyTomlError, match=r"mounts\[1\].*more than one mount"):
        config_for(two, mounts={"data": "vol_1", "logs": "vol_2"})


# ---- guest ----

@pytest.mark.parametrize("vm, guest", [
    ('size = "shared-cpu-1x"', {"cpu_kind": "shared", "cpus": 1, "memory_mb": 256}),
    ('size = "shared-cpu-2x"', {"cpu_kind": "shared", "cpus": 2, "memory_mb": 512}),
    ('size = "performance-1x"', {"cpu_kind": "performance", "cpus": 1, "memory_mb": 2048}),
    ('size = "performance-4x"\nmemory = "16gb"', {"cpu_kind": "performance", "cpus": 4, "memory_mb": 16384}),
    ('memory = "1gb"', {"cpu_kind": "shared", "cpus": 1, "memory_mb": 1024}),
    ('memory = "512mb"', {"cpu_kind": "shared", "cpus": 1, "memory_mb": 512}),
    ('memory = "2GiB"', {"cpu_kind": "shared", "cpus": 1, "memory_mb": 2048}),
    ("memory = 1024", {"cpu_kind": "shared", "cpus": 1, "memory_mb": 1024}),
    ('cpu_kind = "performance"\ncpus = 2\nmemory_mb = 4096', {"cpu_kind": "performance", "cpus": 2, "memory_mb": 4096}),
    ('size = "a10"', {"cpu_kind": "performance", "cpus": 8, "memory_mb": 32768, "gpu_kind": "a10", "gpus": 1}),
])
def test_vm_presets_and_memory(vm, guest):
    assert config_for(f"[[vm]]\n{vm}\n")["guest"] == guest
    assert config_for(f"[vm]\n{vm}\n")["guest"] == guest  # a single [vm] table works too


def test_guest_defaults_and_group_specific_vm(web):
    assert config_for('app = "x"')["guest"] == {"cpu_kind": "shared", "cpus": 1, "memory_mb": 256}
    assert machine_config(web, image="i", mounts={"data": "v"})["guest"]["memory_mb"] == 1024
    assert machine_config(web, image="i", process_group="worker")["guest"] == {
        "cpu_kind": "performance", "cpus": 2, "memory_mb": 4096}


@pytest.mark.parametrize("vm, key, fix", [
    ('size = "huge"', "vm[0].size", "shared-cpu-1x"),
    ('memory = "lots"', "vm[0].memory", '"1gb"'),
    ('memory = "0mb"', "vm[0].memory", "256"),
])
def test_bad_vm_values(vm, key, fix):
    with pytest.raises(FlyTomlError) as err:
        parse_fly_toml(f"[[vm]]\n{vm}\n")
    assert err.value.key == key and fix in err.value.fix


# ---- checks ----

def test_top_level_checks(web):
    checks = machine_config(web, image="i", mounts={"data": "v"})["checks"]
    assert checks == {"alive": {"type": "http", "interval": "1m30s", "method": "GET", "path": "/alive",
                                "port": 8080}}
    assert machine_config(web, image="i", process_group="worker")["checks"] == {
        "worker_tcp": {"type": "tcp", "port": 9000}}


def test_check_without_port_or_http_service_is_an_error():
    with pytest.raises(FlyTomlError, match=r"checks\.a\.port"):
        config_for('[checks.a]\ntype = "tcp"\n')


def test_check_durations_use_flyctl_units():
    # patches.go: bare numbers are milliseconds in checks and seconds for kill_timeout.
    config = config_for('kill_timeout = 90\n[checks.a]\ntype = "tcp"\nport = 1\ninterval = 500\ntimeout = 1500\n')
    assert config["checks"]["a"] == {"type": "tcp", "port": 1, "interval": "500ms", "timeout": "1.5s"}
    assert config["stop_config"] == {"timeout": "1m30s"}


# ---- env, metadata, init, restart, passthrough ----

def test_env_and_process_group(web):
    config = machine_config(web, image="i", mounts={"data": "v"}, env={"DEBUG": "false", "EXTRA": "1"})
    assert config["env"] == {"PORT": "8080", "DEBUG": "false", "FLY_PROCESS_GROUP": "app",
                             "PRIMARY_REGION": "ams", "EXTRA": "1"}
    worker = machine_config(web, image="i", process_group="worker")
    assert worker["env"]["FLY_PROCESS_GROUP"] == "worker"
    assert worker["init"] == {"cmd": ["bin/worker", "--queue", "high prio"]}


def test_metadata(web):
    config = machine_config(web, image="i", mounts={"data": "v"},
                            metadata={"fly_release_id": "rel_1", "fly_release_version": "3"})
    assert config["metadata"] == {"fly_release_id": "rel_1", "fly_release_version": "3",
                                  "fly_platform_version": "v2", "fly_process_group": "app"}
    assert set(config_for('app = "x"')["metadata"]) == {"fly_platform_version", "fly_process_group"}
    with pytest.raises(FlyTomlError, match="fly_process_group"):
        machine_config(web, image="i", mounts={"data": "v"}, metadata={"fly_process_group": "worker"})


def test_default_group_without_processes_is_app():
    config = config_for('app = "x"')
    assert config["metadata"]["fly_process_group"] == "app" and config["env"]["FLY_PROCESS_GROUP"] == "app"
    assert config["init"] == {}
    only = config_for('[processes]\nweb = "serve"\n')
    assert only["metadata"]["fly_process_group"] == "web" and only["init"] == {"cmd": ["serve"]}
    with pytest.raises(FlyTomlError, match="'nope' is not defined"):
        config_for('app = "x"', process_group="nope")


def test_restart_stop_config_and_passthrough(web):
    app = machine_config(web, image="i", mounts={"data": "v"})
    worker = machine_config(web, image="i", process_group="worker")
    assert worker["restart"] == {"policy": "on-failure", "max_retries": 3} and "restart" not in app
    assert config_for('[[restart]]\npolicy = "never"\n')["restart"] == {"policy": "no"}
    assert app["stop_config"] == {"signal": "SIGINT", "timeout": "5s"}
    assert app["metrics"] == {"port": 9091, "path": "/metrics"} and "metrics" not in worker
    assert app["statics"] == [{"guest_path": "/app/public", "url_prefix": "/static"}]
    assert app["files"] == [{"guest_path": "/etc/app.conf", "raw_value": "a2V5PXZhbHVl"}]


def test_files_local_path_is_relative_to_fly_toml(tmp_path):
    (tmp_path / "conf.txt").write_text("hello")
    (tmp_path / "fly.toml").write_text('[[files]]\nguest_path = "/c"\nlocal_path = "conf.txt"\n')
    config = machine_config(load_fly_toml(tmp_path / "fly.toml"), image="i")
    assert config["files"] == [{"guest_path": "/c", "raw_value": "aGVsbG8="}]


# ---- release command ----

def test_release_command_config(web):
    config = release_command_config(web, image="img:1", metadata={"fly_release_id": "rel_1"})
    assert config["init"] == {"cmd": shlex.split("bin/migrate --to 'latest stable'")}
    assert config["init"]["cmd"] == ["bin/migrate", "--to", "latest stable"]
    assert config["restart"] == {"policy": "no"} and config["auto_destroy"] is True
    assert config["dns"] == {"skip_registration": True}
    assert config["metadata"] == {"fly_release_id": "rel_1", "fly_platform_version": "v2",
                                  "fly_process_group": "fly_app_release_command"}
    assert config["env"]["RELEASE_COMMAND"] == "1"
    assert config["env"]["FLY_PROCESS_GROUP"] == "fly_app_release_command"
    assert config["env"]["PORT"] == "8080"
    assert not {"services", "checks", "mounts", "metrics"} & set(config)
    assert config["guest"] == {"cpu_kind": "shared", "cpus": 2, "memory_mb": 1024}  # the app group's [[vm]]


def test_release_command_guest_and_absence():
    assert release_command_config(parse_fly_toml('app = "x"'), image="i") is None
    plain = release_command_config(parse_fly_toml('[deploy]\nrelease_command = "migrate"\n'), image="i")
    assert plain["guest"] == {"cpu_kind": "shared", "cpus": 1, "memory_mb": 256}
    sized = parse_fly_toml('[deploy]\nrelease_command = "m"\n[deploy.release_command_vm]\nsize = "performance-1x"\n')
    assert release_command_config(sized, image="i")["guest"] == {"cpu_kind": "performance", "cpus": 1,
                                                                 "memory_mb": 2048}


def test_release_exit_code():
    def events(*raw: dict) -> list[MachineEvent]:  # as FlyClient.list_machine_events returns them
        return [MachineEvent.model_validate(e) for e in raw]

    newest_first = events(
        {"type": "destroy", "timestamp": 5},
        {"type": "exit", "timestamp": 4, "request": {"exit_event": {"exit_code": 3}}},
        {"type": "start", "timestamp": 3},
        {"type": "exit", "timestamp": 2, "request": {"exit_event": {"exit_code": 0}}},
        {"type": "start", "timestamp": 1},
    )
    assert release_exit_code(newest_first) == 3
    assert release_exit_code(reversed(newest_first)) == 3  # order by timestamp, not by list position
    assert release_exit_code(events({"type": "exit", "timestamp": 2, "request": {"exit_event": {}}},
                                    {"type": "start", "timestamp": 1})) == 0  # Go omits a zero exit_code
    assert release_exit_code(events({"type": "exit", "timestamp": 2,
                                     "request": {"MonitorEvent": {"exit_event": {"exit_code": 137}}}},
                                    {"type": "start", "timestamp": 1})) == 137
    assert release_exit_code(events({"type": "start", "timestamp": 1})) is None


# ---- errors ----

@pytest.mark.parametrize("text, key, words", [
    ('[http_service]\ninternal_port = 8080\nauto_stop_machines = "sometimes"\n',
     "http_service.auto_stop_machines", ['"suspend"', "'sometimes'"]),
    ('[http_service]\ninternal_port = "eighty"\n', "http_service.internal_port", ["'eighty'", "8080"]),
    ('[[services]]\ninternal_port = 80\n[[services.ports]]\nport = "x"\n', "services[0].ports[0].port", ["'x'"]),
    ("[http_service]\nforce_https = true\n", "http_service.internal_port", ["required", "[http_service]"]),
    ('[http_service]\ninternal_port = 80\nforce_https = "yes"\n', "http_service.force_https", ["true"]),
    ('kill_signal = "SIGFOO"\n', "kill_signal", ["SIGTERM"]),
    ('kill_timeout = "5 sec"\n', "kill_timeout", ['"10s"']),
    ('[checks.a]\ntype = "grpc"\n', "checks.a.type", ['"tcp"']),
    ('[processes]\nweb = "w"\n[http_service]\ninternal_port = 1\nprocesses = ["app"]\n',
     "http_service.processes", ["'app'", "['web']"]),
    ('[deploy]\nrelease_command = "echo \'open"\n', "deploy.release_command", ["quotes"]),
    ('[[mounts]]\nsource = "d"\ndestination = "data"\n', "mounts[0].destination", ['"/data"']),
])
def test_bad_values_name_key_and_fix(text, key, words):
    with pytest.raises(FlyTomlError) as err:
        parse_fly_toml(text, source="apps/web/fly.toml")
    message = str(err.value)
    assert err.value.key == key and err.value.line is not None
    assert message.startswith(f"apps/web/fly.toml:{err.value.line}: {key}: ") and "Fix: " in message
    for word in words:
        assert word in message


def test_toml_syntax_error_names_file_and_line(tmp_path):
    path = tmp_path / "fly.toml"
    path.write_text('app = "x"\n\n[http_service\ninternal_port = 8080\n')
    with pytest.raises(FlyTomlError) as err:
        load_fly_toml(path)
    assert err.value.line == 3
    assert str(err.value).startswith(f"{path}:3: invalid TOML")


def test_unknown_keys_are_allowed_and_shapes_normalised(web):
    assert web.model_extra["unknown_section"] == {"anything": "goes"}
    legacy = parse_fly_toml('[[compute]]\nsize = "shared-cpu-4x"\n[mount]\nsource = "d"\ndestination = "/d"\n'
                            '[processes]\n')
    assert legacy.vm[0].size == "shared-cpu-4x" and legacy.mounts[0].source == "d"


# ---- the official schema ----

def _strict(node: Any) -> Any:
    """Close every object schema (additionalProperties: false) so a misspelt key fails too."""
    if isinstance(node, dict):
        node = {k: _strict(v) for k, v in node.items()}
        if node.get("type") == "object" and "properties" in node and "additionalProperties" not in node:
            node["additionalProperties"] = False
    elif isinstance(node, list):
        node = [_strict(v) for v in node]
    return node


def _schema() -> dict[str, Any]:
    components = _strict(copy.deepcopy(json.loads(SPEC.read_text())["components"]))
    # Documented exception: flyctl (fly-go MachineAutostop.MarshalJSON) sends autostop "off"/"stop"
    # as false/true; the schema's own description says the API accepts both forms.
    autostop = components["schemas"]["fly.MachineService"]["properties"]["autostop"]
    autostop.pop("type")
    autostop["anyOf"] = [{"type": "string", "enum": autostop.pop("enum")}, {"type": "boolean"}]
    return {"$ref": "#/components/schemas/fly.MachineConfig", "components": components}


def _errors(schema: dict[str, Any], instance: Any) -> list[str]:
    try:
        import jsonschema
    except ImportError:  # a tiny resolver for the keywords this spec uses
        return _mini_errors(schema, instance, schema)
    return [f"{list(e.absolute_path)}: {e.message}" for e in jsonschema.Draft7Validator(schema).iter_errors(instance)]


def _mini_errors(node: dict[str, Any], value: Any, root: dict[str, Any], path: str = "") -> list[str]:
    if "$ref" in node:
        target = root
        for part in node["$ref"].lstrip("#/").split("/"):
            target = target[part]
        return _mini_errors(target, value, root, path)
    if "anyOf" in node:
        options = [_mini_errors(option, value, root, path) for option in node["anyOf"]]
        return [] if any(not o for o in options) else options[0]
    errors = [e for sub in node.get("allOf", []) for e in _mini_errors(sub, value, root, path)]
    kinds = {"object": dict, "array": list, "string": str, "boolean": bool, "integer": int}
    kind = node.get("type")
    if kind and (not isinstance(value, kinds[kind]) or (kind == "integer" and isinstance(value, bool))):
        return errors + [f"{path}: {value!r} is not {kind}"]
    if "enum" in node and value not in node["enum"]:
        errors.append(f"{path}: {value!r} not in {node['enum']}")
    if isinstance(value, dict):
        props = node.get("properties", {})
        errors += [f"{path}: missing {r}" for r in node.get("required", []) if r not in value]
        for key, item in value.items():
            sub = props.get(key, node.get("additionalProperties", True))
            if sub is False:
                errors.append(f"{path}.{key}: unexpected")
            elif isinstance(sub, dict):
                errors += _mini_errors(sub, item, root, f"{path}.{key}")
    if isinstance(value, list) and "items" in node:
        errors += [e for i, item in enumerate(value) for e in _mini_errors(node["items"], item, root, f"{path}[{i}]")]
    return errors


def test_generated_configs_validate_against_openapi_schema(web):
    schema = _schema()
    configs = [
        machine_config(web, image="img:1", mounts={"data": "vol_1"}, metadata={"fly_release_version": "2"}),
        machine_config(web, image="img:1", process_group="worker"),
        release_command_config(web, image="img:1"),
        config_for('[http_service]\ninternal_port = 80\nauto_stop_machines = false\n'
                   '[http_service.tls_options]\nalpn = ["h2"]\n[http_service.http_options]\ncompress = true\n'
                   '[[vm]]\nsize = "l40s"\n[experimental]\nentrypoint = "/init"\ncmd = ["serve"]\n'),
    ]
    for config in configs:
        assert _errors(schema, config) == [], json.dumps(config, indent=1)
        assert _mini_errors(schema, config, schema) == []  # the fallback agrees with jsonschema
    # The validator is not vacuous: a wrong type and a misspelt key are both caught.
    assert _errors(schema, {"image": "i", "guest": {"cpus": "two"}})
    assert _errors(schema, {"image": "i", "restart": {"policy": "no", "max_retry": 1}})
    assert _mini_errors(schema, {"image": "i", "services": [{"autostop": "sometimes"}]}, schema)


def test_package_exports_import_on_many_threads_at_once():
    # The provider process unpickles on several threads; each export must import without the
    # package importing its own submodules (the cycle Python's import locks report as a deadlock).
    import subprocess
    import sys

    code = (
        "import threading, importlib\n"
        "names = ['FlyToml', 'FlyTomlError', 'load_fly_toml', 'parse_fly_toml', 'machine_config',\n"
        "         'release_command_config', 'auto_stop_mode', 'release_exit_code']\n"
        "mods = ['fly.appconfig.machines', 'fly.appconfig.parse', 'fly.appconfig.schema', 'fly.appconfig.values']\n"
        "errors = []\n"
        "def get(i):\n"
        "    try:\n"
        "        if i % 2: importlib.import_module(mods[i % len(mods)])\n"
        "        getattr(importlib.import_module('fly.appconfig'), names[i % len(names)])\n"
        "    except BaseException as exc:\n"
        "        errors.append(exc)\n"
        "threads = [threading.Thread(target=get, args=(i,)) for i in range(32)]\n"
        "[t.start() for t in threads]; [t.join(20) for t in threads]\n"
        "assert not any(t.is_alive() for t in threads) and not errors, errors\n"
    )
    root = Path(__file__).resolve().parent.parent
    subprocess.run([sys.executable, "-c", code], cwd=root, check=True, timeout=60)


def test_every_issue_names_its_line_on_one_line():
    text = ('app = "x"\n'
            '[[services]]\n  internal_port = 80\n  [[services.ports]]\n    port = 1\n'
            '[[services]]\n  internal_port = 81\n  [[services.ports]]\n    port = "x"\n'
            '[http_service]\n  internal_port = "y"\n')
    with pytest.raises(FlyTomlError) as err:
        parse_fly_toml(text, source="fly.toml")
    message = str(err.value)
    assert "\n" not in message
    assert err.value.issues[0][0] == "http_service.internal_port" and err.value.line == 11
    assert "; also line 9: services[1].ports[0].port: 'x' is not a port number" in message


def test_a_near_miss_key_is_refused_but_unknown_keys_are_kept():
    with pytest.raises(FlyTomlError) as err:
        parse_fly_toml('[[vm]]\n  memroy = "1gb"\n')
    assert err.value.key == "vm[0].memroy" and err.value.line == 2 and "did you mean 'memory'" in str(err.value)
    assert parse_fly_toml('console_command = "/bin/sh"\n[experimental]\n  auto_rollback = true\n')
