"""Things done *with* machines: a health gate run through exec, a release command run the way flyctl
runs one, a file read back from a machine's volume, and a sweep of an app's machines at teardown."""

from __future__ import annotations

import json
import logging
import time
from datetime import datetime, timezone
from typing import Any

import pulumi
from pulumi.dynamic import CreateResult, Resource, UpdateResult
from pydantic import Field
from tenacity import RetryError, Retrying, retry_if_result, stop_after_delay, wait_exponential

from ..appconfig import release_exit_code
from ..client import FlyClient
from ..errors import FlyError, FlyWaitTimeout
from .base import FlyProvider, ProviderInputs
from .connection_args import FlyConnectionArgs

log = logging.getLogger("fly.providers")


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class ExecCheckInputs(ProviderInputs):
    app: str = Field(min_length=1)
    machine_id: str = Field(min_length=1)
    instance_id: str | None = None  # a new machine version runs the check again
    name: str = Field(min_length=1)
    command: list[str] = Field(min_length=1)
    timeout: int = Field(default=120, ge=1, le=3600)


class ExecCheckProvider(FlyProvider):
    """A health gate: the machine is started (wait endpoint) and ``command`` exits 0 through exec.

    A check that fails is run again with exponential backoff until ``timeout``: a service that just
    started may need a moment before, say, its export can be mounted. When it never passes, the
    resource fails, naming the check, so nothing that depends on the gate is created.
    """

    inputs_model = ExecCheckInputs
    replace_on = frozenset({"app", "machine_id"})
    kind = "health gate"

    def _run(self, props: dict[str, Any]) -> dict[str, Any]:
        inputs = ExecCheckInputs.model_validate(self.desired(props))
        deadline = time.monotonic() + inputs.timeout
        with self.client(props) as client:
            client.wait_machine(inputs.app, inputs.machine_id, "started", timeout=inputs.timeout)
            last: dict[str, Any] = {}

            def attempt() -> bool:
                result = client.exec_machine(inputs.app, inputs.machine_id, inputs.command,
                                             timeout=max(1, min(60, int(deadline - time.monotonic()))))
                last.update(exit_code=result.exit_code, output=(result.stdout + result.stderr).strip()[-500:])
                return result.exit_code == 0

            try:
                Retrying(retry=retry_if_result(lambda ok: not ok),
                         stop=stop_after_delay(max(0.0, deadline - time.monotonic())),
                         wait=wait_exponential(multiplier=0.25, max=8))(attempt)
            except RetryError:
                raise FlyError(
                    f"health gate {inputs.name!r} failed on machine {inputs.machine_id} of app {inputs.app}: "
                    f"`{' '.join(inputs.command)}` exited {last.get('exit_code')} for {inputs.timeout}s"
                    + (f"; last output: {last['output']}" if last.get("output") else "")
                    + f". Look at the machine's logs (fly logs -a {inputs.app})") from None
        return {**props, "passed_at": _now(), "output": last.get("output", "")}

    def create(self, props: dict[str, Any]) -> CreateResult:
        return CreateResult(f"{props['app']}/{props['machine_id']}/{props['name']}", self._run(props))

    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        return UpdateResult(self._run(news))

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        return None

    def read_live(self, client: FlyClient, _id: str, props: dict[str, Any]) -> dict[str, Any] | None:
        return {} if client.find_machine(props["app"], props["machine_id"]) is not None else None


class ExecCheck(Resource):
    passed_at: pulumi.Output[str]
    output: pulumi.Output[str]
    name: pulumi.Output[str]

    def __init__(self, resource_name: str, *, app: pulumi.Input[str], machine_id: pulumi.Input[str],
                 name: str, command: list[str], connection: FlyConnectionArgs,
                 instance_id: pulumi.Input[str] | None = None, timeout: int = 120,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        props = {"app": app, "machine_id": machine_id, "instance_id": instance_id, "name": name,
                 "command": command, "timeout": timeout, "passed_at": None, "output": None, **connection.props()}
        super().__init__(ExecCheckProvider(), resource_name, props, connection.secret_opts(opts))


class ReleaseCommandInputs(ProviderInputs):
    app: str = Field(min_length=1)
    region: str = Field(pattern=r"^[a-z]{3}$")
    config: dict[str, Any]
    timeout: int = Field(default=600, ge=1, le=7200)


class ReleaseCommandProvider(FlyProvider):
    """Runs an app's release command as flyctl's deploy does: a one-off machine (restart ``no``,
    ``auto_destroy``, process group ``fly_app_release_command``), waited on with the wait endpoint, its
    exit code read from the exit event. It runs again whenever its config (image, command, env) changes."""

    inputs_model = ReleaseCommandInputs
    replace_on = frozenset({"app"})
    kind = "release command"

    def _run(self, props: dict[str, Any]) -> dict[str, Any]:
        inputs = ReleaseCommandInputs.model_validate(self.desired(props))
        with self.client(props) as client:
            machine = client.create_machine(inputs.app, inputs.config, region=inputs.region)
            final = "destroyed" if inputs.config.get("auto_destroy") else "stopped"
            try:
                client.wait_machine(inputs.app, machine.id, final, timeout=inputs.timeout)
            except FlyWaitTimeout:
                client.delete_machine(inputs.app, machine.id, force=True)
                raise FlyError(f"release command of app {inputs.app} did not finish within {inputs.timeout}s "
                               f"(machine {machine.id}, now destroyed)") from None
            code = release_exit_code(client.list_machine_events(inputs.app, machine.id))
        if code is None:
            raise FlyError(f"release command of app {inputs.app} (machine {machine.id}) ended without an exit event")
        if code != 0:
            raise FlyError(f"release command of app {inputs.app} failed with exit code {code} "
                           f"(machine {machine.id}); its output is in `fly logs -a {inputs.app}`")
        return {**props, "machine_id": machine.id, "exit_code": code, "finished_at": _now()}

    def create(self, props: dict[str, Any]) -> CreateResult:
        outs = self._run(props)
        return CreateResult(f"{props['app']}/release/{outs['machine_id']}", outs)

    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        return UpdateResult(self._run(news))

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        return None  # the release machine destroyed itself

    def read_live(self, client: FlyClient, _id: str, props: dict[str, Any]) -> dict[str, Any] | None:
        return {} if client.find_app(props["app"]) is not None else None


class ReleaseCommand(Resource):
    machine_id: pulumi.Output[str]
    exit_code: pulumi.Output[int]
    finished_at: pulumi.Output[str]

    def __init__(self, resource_name: str, *, app: pulumi.Input[str], region: pulumi.Input[str],
                 config: pulumi.Input[dict[str, Any]], connection: FlyConnectionArgs, timeout: int = 600,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        props = {"app": app, "region": region, "config": config, "timeout": timeout, "machine_id": None,
                 "exit_code": None, "finished_at": None, **connection.props()}
        super().__init__(ReleaseCommandProvider(), resource_name, props, connection.secret_opts(opts))


class MachineFileInputs(ProviderInputs):
    app: str = Field(min_length=1)
    machine_id: str = Field(min_length=1)
    path: str = Field(pattern=r"^/", description="an absolute path on the machine")
    json_schema: dict[str, Any] | None = None
    triggers: list[Any] = Field(default_factory=list)


class MachineFileProvider(FlyProvider):
    """Reads a file through exec (``cat``); with ``json_schema``, the content must be JSON valid against
    it. A missing or malformed file fails, naming the file and the problem. Reads again when
    ``triggers`` change (e.g. the release that writes the file ran again)."""

    inputs_model = MachineFileInputs
    kind = "machine file"

    def _read(self, props: dict[str, Any]) -> dict[str, Any]:
        inputs = MachineFileInputs.model_validate(self.desired(props))
        where = f"{inputs.path} on machine {inputs.machine_id} of app {inputs.app}"
        with self.client(props) as client:
            result = client.exec_machine(inputs.app, inputs.machine_id, ["cat", inputs.path])
        if result.exit_code != 0:
            raise FlyError(f"{where} could not be read: {(result.stderr or result.stdout).strip() or 'missing'}")
        content = result.stdout
        parsed: Any = None
        if inputs.json_schema is not None:
            try:
                parsed = json.loads(content)
            except ValueError as exc:
                raise FlyError(f"{where} is not valid JSON: {exc}") from None
            import jsonschema  # only needed where a schema is given

            errors = sorted(jsonschema.Draft202012Validator(inputs.json_schema).iter_errors(parsed),
                            key=lambda e: list(e.absolute_path))
            if errors:
                problems = "; ".join(f"{'/'.join(map(str, e.absolute_path)) or '(top)'}: {e.message}"
                                     for e in errors[:5])
                raise FlyError(f"{where} is malformed: {problems}")
        return {**props, "content": content, "parsed": parsed}

    def create(self, props: dict[str, Any]) -> CreateResult:
        return CreateResult(f"{props['app']}/{props['machine_id']}:{props['path']}", self._read(props))

    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        return UpdateResult(self._read(news))

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        return None

    def read_live(self, client: FlyClient, _id: str, props: dict[str, Any]) -> dict[str, Any] | None:
        return {} if client.find_machine(props["app"], props["machine_id"]) is not None else None


class MachineFile(Resource):
    content: pulumi.Output[str]
    parsed: pulumi.Output[Any]
    path: pulumi.Output[str]

    def __init__(self, resource_name: str, *, app: pulumi.Input[str], machine_id: pulumi.Input[str], path: str,
                 connection: FlyConnectionArgs, json_schema: dict[str, Any] | None = None,
                 triggers: list[pulumi.Input[Any]] | None = None, opts: pulumi.ResourceOptions | None = None) -> None:
        props = {"app": app, "machine_id": machine_id, "path": path, "json_schema": json_schema,
                 "triggers": triggers or [], "content": None, "parsed": None, **connection.props()}
        super().__init__(MachineFileProvider(), resource_name, props, connection.secret_opts(opts))


class MachineSweeperInputs(ProviderInputs):
    app: str = Field(min_length=1)
    wait_timeout: int = Field(default=300, ge=1, le=3600)


class MachineSweeperProvider(FlyProvider):
    """Owns nothing at create; at delete destroys every machine of the app, including machines made
    outside Pulumi (e.g. by a control plane), and waits until they are gone."""

    inputs_model = MachineSweeperInputs
    replace_on = frozenset({"app"})
    kind = "machine sweeper"

    def create(self, props: dict[str, Any]) -> CreateResult:
        return CreateResult(f"{props['app']}/sweeper", {**props})

    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        return UpdateResult({**news})

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        inputs = MachineSweeperInputs.model_validate(self.desired(props))
        with self.client(props) as client:
            if client.find_app(inputs.app) is None:
                return
            machines = [m for m in client.list_machines(inputs.app) if m.state not in ("destroyed", "destroying")]
            for machine in machines:
                client.delete_machine(inputs.app, machine.id, force=True)
            for machine in machines:
                if client.find_machine(inputs.app, machine.id) is not None:
                    client.wait_machine(inputs.app, machine.id, "destroyed", timeout=inputs.wait_timeout)
            log.info("swept %d machine(s) of app %s", len(machines), inputs.app)

    def read_live(self, client: FlyClient, _id: str, props: dict[str, Any]) -> dict[str, Any] | None:
        return {} if client.find_app(props["app"]) is not None else None


class MachineSweeper(Resource):
    app: pulumi.Output[str]

    def __init__(self, resource_name: str, *, app: pulumi.Input[str], connection: FlyConnectionArgs,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        props = {"app": app, "wait_timeout": 300, **connection.props()}
        super().__init__(MachineSweeperProvider(), resource_name, props, connection.secret_opts(opts))
