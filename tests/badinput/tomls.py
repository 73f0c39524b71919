"""Bad deploy/fly.*.toml files: each case edits one of the project's real files. ``line_of`` is a piece
of the bad file whose (first) line the message must name; ``expect`` holds the key and the words of
the problem and of the fix."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


@dataclass(frozen=True)
class BadToml:
    id: str
    service: str
    edit: Callable[[bytes], bytes]
    line_of: bytes | None
    expect: tuple[str, ...]

    @property
    def file(self) -> str:
        return f"deploy/fly.{self.service}.toml"

    def text(self) -> bytes:
        return self.edit((DEPLOY / f"fly.{self.service}.toml").read_bytes())

    def line(self) -> int | None:
        if self.line_of is None:
            return None
        data = self.text()
        return data[:data.index(self.line_of)].count(b"\n") + 1


def replace(old: str, new: str) -> Callable[[bytes], bytes]:
    def edit(data: bytes) -> bytes:
        assert old.encode() in data, old
        return data.replace(old.encode(), new.encode(), 1)
    return edit


def append(extra: str) -> Callable[[bytes], bytes]:
    return lambda data: data + extra.encode()


def _t(id: str, service: str, edit: Callable[[bytes], bytes], line_of: str | bytes | None, *expect: str) -> BadToml:
    marker = line_of.encode() if isinstance(line_of, str) else line_of
    return BadToml(id, service, edit, marker, expect)


SECOND_MOUNT = '\n[[mounts]]\n  source = "nfsextra"\n  destination = "/extra"\n'

TOMLS: list[BadToml] = [
    _t("invalid-utf8", "nfs", lambda d: d.replace(b"# The slice's NFS server.", b"# The slice\xff NFS server.", 1),
       b"\xff", "is not valid UTF-8", "save the file as UTF-8"),
    _t("two-mounts", "nfs", replace('[[restart]]', SECOND_MOUNT.strip() + '\n\n[[restart]]'),
       '[[mounts]]\n  source = "nfsextra"', "mounts[1]", "more than one mount", "keep one [[mounts]]"),
    _t("mount-renamed", "nfs", replace('source = "nfsdata"', 'source = "data"'), "[[mounts]]",
       "mounts", "source = 'nfsdata'", 'add [[mounts]] source = "nfsdata"'),
    _t("mount-relative-destination", "nfs", replace('destination = "/data"', 'destination = "data"'),
       'destination = "data"', "mounts[0].destination", "not an absolute path", '"/data"'),
    _t("nfs-check-without-port", "nfs", append('\n[checks.alive]\n  type = "tcp"\n'), "[checks.alive]",
       "checks.alive.port", "check has no port", "set port ="),
    _t("nfs-file-missing", "nfs", append('\n[[files]]\n  guest_path = "/etc/exports"\n  local_path = "exports"\n'),
       'local_path = "exports"', "files[0].local_path", "cannot read", "make local_path point to an existing file"),
    _t("nfs-kill-signal", "nfs", replace('kill_signal = "SIGTERM"', 'kill_signal = "SIGFOO"'), "SIGFOO",
       "kill_signal", "is not a stop signal", "SIGTERM"),
    _t("nfs-undefined-process-group", "nfs", replace('  protocol = "tcp"', '  protocol = "tcp"\n  processes = ["web"]'),
       'processes = ["web"]', "services[0].processes", "process group 'web'", "add web to [processes]"),
    _t("router-syntax", "router", replace("[http_service]", "[http_service"), "[http_service",
       "invalid TOML", "fix the syntax on that line"),
    _t("router-duplicate-key", "router", replace('  LOG_LEVEL = "info"', '  LOG_LEVEL = "info"\n  PORT = "9090"'),
       'PORT = "9090"', "invalid TOML"),
    _t("router-port-words", "router", replace("internal_port = 8080", 'internal_port = "eighty"'), "eighty",
       "http_service.internal_port", "'eighty' is not a port number", "8080"),
    _t("router-key-typo", "router", replace("internal_port = 8080", "internal_prot = 8080"), "internal_prot",
       "http_service.internal_prot", "did you mean 'internal_port'", "rename it to internal_port"),
    _t("router-section-typo", "router", replace("[http_service]", "[http_servce]"), "[http_servce]",
       "http_servce", "did you mean 'http_service'"),
    _t("router-region", "router", replace('primary_region = "syd"', 'primary_region = "zzz"'), "zzz",
       "primary_region", "is not a Fly region", 'such as "syd"'),
    _t("router-env-table", "router", append('\n[env.NESTED]\n  A = "b"\n'), "[env.NESTED]",
       "env.NESTED", "plain values", 'NESTED = "value"'),
    _t("router-secret-in-env", "router", replace('LOG_LEVEL = "info"', 'CLERK_SECRET_KEY = "sk_' 'live_0123456789abcdef"'),
       "CLERK_SECRET_KEY", "env.CLERK_SECRET_KEY", "looks like a credential", "pulumi config set --secret"),
    _t("exec-vm-size", "exec", replace('size = "shared-cpu-2x"', 'size = "shared-cpu-3x"'), "shared-cpu-3x",
       "vm[0].size", "is not a Fly machine size", "shared-cpu-2x"),
    _t("exec-memory", "exec", replace('memory = "1gb"', 'memory = "lots"'), '"lots"',
       "vm[0].memory", "is not a memory size", '"512mb"'),
    _t("exec-memory-too-little", "exec", replace('memory = "1gb"', 'memory = "128mb"'), "128mb",
       "vm[0].memory", "not enough memory for 2 shared CPUs", "between 512 and 4096 MB"),
    _t("router-memory-not-multiple", "router", replace('memory = "512mb"', 'memory = "1000mb"'), "1000mb",
       "vm[0].memory", "not a multiple of 256 MB", "768 or 1024 MB"),
    _t("exec-image-invalid", "exec", replace('image = "registry.fly.io/artifact-fly-exec:2026.11.1"',
                                             'image = "Registry.fly.io/artifact fly exec"'), "Registry.fly.io",
       "build.image", "contains a space", "pulumi config set artifact-slice:execImage"),
    _t("exec-image-missing", "exec", replace('[build]\n  image = "registry.fly.io/artifact-fly-exec:2026.11.1"\n', ""),
       None, "build.image", "is not set", "pulumi config set artifact-slice:execImage"),
    _t("worker-stop-not-suspend", "worker-pool",
       replace('auto_stop_machines = "suspend"', 'auto_stop_machines = "stop"'),
       'auto_stop_machines = "stop"', "http_service.auto_stop_machines", "is 'stop'", 'auto_stop_machines = "suspend"'),
    _t("worker-autostop-garbage", "worker-pool",
       replace("auto_stop_machines = \"suspend\"", 'auto_stop_machines = "sometimes"'), "sometimes",
       "http_service.auto_stop_machines", "is not an auto-stop mode", '"suspend"'),
    _t("worker-check-name-list", "worker-pool", append('\n[[checks]]\n  name = ["a"]\n  type = "tcp"\n'), None,
       "cannot be read as a fly.toml", "https://fly.io/docs/reference/configuration/"),
    _t("basic-no-release-command", "host-basic",
       replace('release_command = "/usr/local/bin/publish-image-manifest basic"', ""), "[deploy]",
       "deploy.release_command", "is not set", "publish-image-manifest basic"),
    _t("coder-release-quotes", "host-coder",
       replace('release_command = "/usr/local/bin/publish-image-manifest coder"',
               "release_command = \"/usr/local/bin/publish-image-manifest 'coder\""), "release_command",
       "deploy.release_command", "cannot split the command", "balance its quotes"),
]
