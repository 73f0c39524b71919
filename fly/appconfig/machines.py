"""fly.toml -> the Machines API machine config, as flyctl's machines.go builds it
(updateMachineConfig, ToReleaseMachineConfig, plus deploy's machines_releasecommand.go)."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any, Iterable

from .schema import PRESETS, RELEASE_GROUP, Compute, File, FlyToml, HttpCheck, HttpService, PortSpec, Service, TcpCheck
from .values import split_command

def _compact(d: dict[str, Any]) -> dict[str, Any]:
    """Go's `omitempty`: drop None, False, 0, "" and empty collections."""
    return {k: v for k, v in d.items() if v not in (None, False, 0, "", [], {})}


def _guest(toml: FlyToml, compute: Compute | None) -> dict[str, Any]:
    """machines.go toMachineGuest/computeToGuest: the size preset, then `memory`, then explicit
    guest fields. flyctl leaves guest unset without [[vm]] (Fly then applies shared-cpu-1x); we
    send that default explicitly so the desired state is complete."""
    if compute is None:
        guest = dict(PRESETS["shared-cpu-1x"])
    else:
        guest = dict(PRESETS[compute.size or ("performance-8x" if compute.gpu_kind else "shared-cpu-1x")])
        if compute.memory:
            guest["memory_mb"] = compute.memory
        guest.update(_compact(compute.model_dump(include={"cpu_kind", "cpus", "memory_mb", "max_memory_mb", "gpu_kind",
                                                          "gpus", "kernel_args", "host_dedication_id",
                                                          "persist_rootfs"})))
    host = (compute.host_dedication_id if compute else None) or toml.host_dedication_id
    if compute is not None:
        _check_memory(toml, compute, guest)
    return {**guest, "host_dedication_id": host} if host else guest


# fly-go machine_types.go: memory per CPU, by CPU kind (flyctl `machine run/update` and `scale vm`
# refuse what the Machines API would refuse, before any call; so do we).
MEMORY_MB_PER_CPU = {"shared": (256, 2048), "performance": (2048, 8192)}


def _check_memory(toml: FlyToml, compute: Compute, guest: dict[str, Any]) -> None:
    limits = MEMORY_MB_PER_CPU.get(str(guest.get("cpu_kind")))
    cpus, memory = int(guest.get("cpus") or 1), int(guest.get("memory_mb") or 0)
    if limits is None or not memory:
        return
    index = next((i for i, c in enumerate(toml.vm) if c is compute), None)
    section = f"vm[{index}]" if index is not None else "deploy.release_command_vm"
    key = f"{section}.memory" if compute.memory else f"{section}.memory_mb" if compute.memory_mb else section
    low, high = cpus * limits[0], cpus * limits[1]
    what = f"{cpus} {guest['cpu_kind']} CPU{'s' if cpus > 1 else ''}"
    if not low <= memory <= high:
        raise toml.error(key, f"{memory} MB is {'not enough' if memory < low else 'too much'} memory for {what}",
                         f"use between {low} and {high} MB (e.g. \"{low}mb\"), or a bigger size")
    if memory % 256:
        raise toml.error(key, f"{memory} MB is not a multiple of 256 MB", f"use {memory - memory % 256 or 256} or "
                         f"{memory - memory % 256 + 256} MB")


def _compute_for(toml: FlyToml, group: str) -> Compute | None:
    # processgroups.go ComputeForGroup: [[vm]] without processes fit every group; the last one that
    # names the group explicitly wins over them.
    fits = [c for c in toml.vm if not c.processes or toml._matches(group, c.processes)]
    best = fits[0] if fits else None
    for c in fits[1:]:
        best = c if group in c.processes else best
    return best


def _check(check: TcpCheck, kind: str) -> dict[str, Any]:
    out = {"type": kind, **_compact(check.model_dump(include={"interval", "timeout", "grace_period"}))}
    if isinstance(check, HttpCheck):
        out |= _compact(check.model_dump(include={"method", "path", "protocol", "tls_server_name"}))
        if check.tls_skip_verify is not None:
            out["tls_skip_verify"] = check.tls_skip_verify
        if check.headers:
            out["headers"] = [{"name": k, "values": [v]} for k, v in sorted(check.headers.items())]
    return out


def _service(svc: HttpService | Service) -> dict[str, Any]:
    if isinstance(svc, HttpService):  # service.go HTTPService.ToService
        ports = [_compact({"port": 80, "handlers": ["http"], "force_https": svc.force_https,
                           "http_options": svc.http_options}),
                 _compact({"port": 443, "handlers": ["http", "tls"], "http_options": svc.http_options,
                           "tls_options": svc.tls_options})]
        checks = [_check(c, "http") for c in svc.checks]
        protocol = "tcp"
    else:
        ports = [_compact(p.model_dump(include=set(PortSpec.model_fields))) for p in svc.ports]
        checks = [_check(c, "tcp") for c in svc.tcp_checks] + [_check(c, "http") for c in svc.http_checks]
        protocol = svc.protocol
    out: dict[str, Any] = {"protocol": protocol, "internal_port": svc.internal_port}
    if svc.auto_stop_machines is not None:
        # flyctl sends fly-go's MachineAutostop.MarshalJSON: off/stop as the old booleans, only
        # "suspend" as a string. The OpenAPI schema lists strings only, but its own description
        # (and the API) accept both; we match flyctl byte for byte.
        out["autostop"] = {"off": False, "stop": True}.get(svc.auto_stop_machines, svc.auto_stop_machines)
    if svc.auto_start_machines is not None:
        out["autostart"] = svc.auto_start_machines
    if svc.min_machines_running is not None:
        out["min_machines_running"] = svc.min_machines_running
    out |= _compact({"ports": ports, "checks": checks,
                     "concurrency": _compact(svc.concurrency.model_dump(include={"type", "hard_limit", "soft_limit"}))
                     if svc.concurrency else None})
    return out


def _services_for(toml: FlyToml, group: str) -> list[HttpService | Service]:
    http = [toml.http_service] if toml.http_service and toml._matches(group, toml.http_service.processes) else []
    return [*http, *(s for s in toml.services if toml._matches(group, s.processes))]


def _files(toml: FlyToml, files: Iterable[tuple[int, File]]) -> list[dict[str, Any]]:
    out = []
    for i, f in files:  # config.go File.toMachineFile: contents travel base64-encoded
        entry: dict[str, Any] = {"guest_path": f.guest_path}
        if f.secret_name is not None:
            entry["secret_name"] = f.secret_name
        elif f.raw_value is not None:
            entry["raw_value"] = base64.b64encode(f.raw_value.encode()).decode()
        else:
            path = (toml._base_dir or Path.cwd()) / str(f.local_path)
            try:
                entry["raw_value"] = base64.b64encode(path.read_bytes()).decode()
            except OSError as exc:
                raise toml.error(f"files[{i}].local_path", f"cannot read {path} ({exc.strerror or exc})",
                                 "make local_path point to an existing file, relative to fly.toml") from None
        out.append(entry)
    return out


def _stop_config(toml: FlyToml) -> dict[str, Any] | None:
    return _compact({"signal": toml.kill_signal, "timeout": toml.kill_timeout}) or None


def _metadata(toml: FlyToml, given: dict[str, str] | None, group: str) -> dict[str, str]:
    # fly_platform_version=v2 and fly_process_group are what `fly status`/`fly deploy` use to
    # recognise a Machines-platform app's machines; fly_release_* come only from the caller.
    out = dict(given or {})
    for key, value in (("fly_platform_version", "v2"), ("fly_process_group", group)):
        if out.get(key, value) != value:
            raise toml.error(None, f"metadata {key}={out[key]!r} contradicts the {value!r} this config sets",
                             f"drop {key} from the metadata argument")
        out[key] = value
    bad = [k for k, v in out.items() if not isinstance(v, str)]
    if bad:
        raise toml.error(None, f"metadata values must be strings (not for {bad})", "pass str values")
    return out


def machine_config(toml: FlyToml, *, image: str, process_group: str | None = None,
                   mounts: dict[str, str] | None = None, env: dict[str, str] | None = None,
                   metadata: dict[str, str] | None = None) -> dict[str, Any]:
    """The Machines API ``config`` for one process group, as flyctl's ToMachineConfig builds it.

    ``mounts`` maps a volume name ([[mounts]] source) to the id of the volume to attach; ``env``
    overrides fly.toml's [env]; ``metadata`` adds keys (e.g. fly_release_id, fly_release_version).
    """
    group = process_group or toml.default_process_group()
    if group not in toml.process_groups():
        raise toml.error("processes", f"process group {group!r} is not defined",
                         f"use one of {toml.process_groups()} or add it to [processes]")
    config: dict[str, Any] = {"image": image}

    # Init: [processes] command for the group, else [experimental] cmd; flyctl always sends `init`.
    cmd = split_command(toml.processes[group], ("processes", group)) if toml.processes.get(group) else None
    exp = toml.experimental
    init = {"cmd": cmd or (exp.cmd if exp else None), "entrypoint": exp.entrypoint if exp else None,
            "exec": exp.exec if exp else None, "swap_size_mb": toml.swap_size_mb}
    config["init"] = _compact(init)
    config["guest"] = _guest(toml, _compute_for(toml, group))

    # Env: fly.toml [env], then what flyctl always sets, then the caller's overrides.
    config["env"] = {**toml.env, "FLY_PROCESS_GROUP": group,
                     **({"PRIMARY_REGION": toml.primary_region} if toml.primary_region else {}), **(env or {})}
    config["metadata"] = _metadata(toml, metadata, group)

    services = [_service(s) for s in _services_for(toml, group)]
    if services:
        config["services"] = services

    checks = {}
    http = toml.http_service if toml.http_service and toml._matches(group, toml.http_service.processes) else None
    for name, check in toml.checks.items():
        if not toml._matches(group, check.processes):
            continue
        port = check.port if check.port is not None else (http.internal_port if http else None)
        if port is None:  # machines.go: a port-less check borrows the group's http_service port
            raise toml.error(f"checks.{name}.port", f"check has no port and group {group!r} has no http_service",
                             "set port = <the port your app listens on>")
        out = _check(check, str(check.type)) | {"port": port}
        if check.method:
            out["method"] = check.method.upper()  # toplevelcheck.go upper-cases top-level methods
        checks[name] = out
    if checks:
        config["checks"] = checks

    group_mounts = [(i, m) for i, m in enumerate(toml.mounts) if toml._matches(group, m.processes)]
    if len(group_mounts) > 1:
        raise toml.error(f"mounts[{group_mounts[1][0]}]", f"group {group!r} has more than one mount",
                         "a Fly Machine attaches one volume: keep one [[mounts]] per process group")
    for i, m in group_mounts:
        volume_id = (mounts or {}).get(m.source)
        if not volume_id:
            raise toml.error(f"mounts[{i}].source", f"volume {m.source!r} has no volume id to attach",
                             f"create the volume and pass mounts={{{m.source!r}: '<volume id>'}}")
        config["mounts"] = [{"volume": volume_id, "path": m.destination, "name": m.source,
                             **_compact({"extend_threshold_percent": m.auto_extend_size_threshold,
                                         "add_size_gb": m.auto_extend_size_increment,
                                         "size_gb_limit": m.auto_extend_size_limit})}]

    metrics = next((m for m in toml.metrics if toml._matches(group, m.processes)), None)
    if metrics and _compact(metrics.model_dump(include={"port", "path", "https"})):
        config["metrics"] = _compact(metrics.model_dump(include={"port", "path", "https"}))
    if toml.statics:
        config["statics"] = [_compact(s.model_dump(include={"guest_path", "url_prefix", "tigris_bucket",
                                                            "index_document"})) for s in toml.statics]
    files = _files(toml, ((i, f) for i, f in enumerate(toml.files) if toml._matches(group, f.processes)))
    if files:
        config["files"] = files
    if stop := _stop_config(toml):
        config["stop_config"] = stop
    restarts = [r for r in toml.restart if toml._matches(group, r.processes)]
    if restarts:  # machines.go: the last matching [[restart]] wins; fly.toml's "never" is the API's "no"
        r = restarts[-1]
        config["restart"] = _compact({"policy": "no" if r.policy == "never" else r.policy, "max_retries": r.retries})
    return config


def release_command_config(toml: FlyToml, *, image: str, env: dict[str, str] | None = None,
                           metadata: dict[str, str] | None = None) -> dict[str, Any] | None:
    """The release_command machine config (machines.go ToReleaseMachineConfig plus deploy's
    launchInputForReleaseCommand), or None when [deploy] has no release_command.

    A one-shot machine: restart "no", auto_destroy, hidden from DNS, no services/checks/mounts;
    read its result with :func:`fly.models.release_exit_code`.
    """
    if not (toml.deploy and toml.deploy.release_command):
        return None
    exp = toml.experimental
    config: dict[str, Any] = {
        "image": image,
        "init": _compact({"cmd": split_command(toml.deploy.release_command, ("deploy", "release_command")),
                          "entrypoint": exp.entrypoint if exp else None, "swap_size_mb": toml.swap_size_mb}),
        "restart": {"policy": "no"},
        "auto_destroy": True,
        "dns": {"skip_registration": True},
        "metadata": _metadata(toml, metadata, RELEASE_GROUP),
        "env": {**toml.env, "RELEASE_COMMAND": "1", "FLY_PROCESS_GROUP": RELEASE_GROUP,
                **({"PRIMARY_REGION": toml.primary_region} if toml.primary_region else {}), **(env or {})},
        # release_command_vm if given; otherwise flyctl reuses the biggest guest among the default
        # group's machines, i.e. what machine_config gives that group (shared-cpu-1x by default).
        "guest": _guest(toml, toml.deploy.release_command_vm
                        or _compute_for(toml, toml.default_process_group())),
    }
    if stop := _stop_config(toml):
        config["stop_config"] = stop
    files = _files(toml, enumerate(toml.files))  # flyctl merges every [[files]] entry here
    if files:
        config["files"] = files
    return config


def auto_stop_mode(toml: FlyToml, process_group: str | None = None) -> str:
    """How Fly's proxy idles the group's machines: "off", "stop" or "suspend" (unset means "off")."""
    group = process_group or toml.default_process_group()
    if group not in toml.process_groups():
        raise toml.error("processes", f"process group {group!r} is not defined", f"use one of {toml.process_groups()}")
    modes = {s.auto_stop_machines or "off" for s in _services_for(toml, group)}
    if len(modes) > 1:
        raise toml.error("auto_stop_machines", f"the services of group {group!r} disagree: {sorted(modes)}",
                         "set the same auto_stop_machines on http_service and every [[services]] of the group")
    return modes.pop() if modes else "off"
