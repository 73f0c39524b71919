"""Things done *with* machines: a health gate run through exec, a release command run the way flyctl
runs one, a file read back from a machine's volume, and a sweep of an app's machines at teardown."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from pydantic import Field
from tenacity import RetryError, Retrying, retry_if_result, stop_after_delay, wait_exponential

from ..appconfig import release_exit_code
from ..errors import (
    FlyAlreadyExists,
    FlyAPIError,
    FlyAuthError,
    FlyHealthGateFailed,
    FlyManifestInvalid,
    FlyNotFound,
    FlyReleaseCommandFailed,
    FlyWaitTimeout,
)
from .base import FlyProvider, FlyResource, ProviderInputs, ProviderOutputs, normal

if TYPE_CHECKING:  # the program process never needs the HTTP client (nor its import time)
    from ..client import FlyClient

log = logging.getLogger("fly.providers")

# Exit codes a shell gives a command it cannot run: retrying will not make the file appear.
COMMAND_MISSING = {126: "is not executable", 127: "does not exist in the image"}


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- health gate -----------------------------------------------------------------------------------------

class ExecCheckInputs(ProviderInputs):
    app: str = Field(min_length=1)
    machine_id: str = Field(min_length=1)
    instance_id: str | None = None  # a new machine version runs the check again
    name: str = Field(min_length=1)
    command: list[str] = Field(min_length=1)
    timeout: int = Field(default=120, ge=1, le=3600)


class ExecCheckOutputs(ProviderOutputs):
    passed_at: str = ""
    output: str = ""


class ExecCheckProvider(FlyProvider[ExecCheckInputs, ExecCheckOutputs]):
    """A health gate: ``command`` exits 0 through exec on a started machine (when exec is refused, the gate
    waits for `started` with the wait endpoint first).

    A check that fails is run again with exponential backoff until ``timeout``: a service that just
    started may need a moment before, say, its export can be mounted. A command the image does not have
    (exit 126/127) fails at once. When it never passes, the resource fails with ``FlyHealthGateFailed``,
    so nothing that depends on the gate is created.
    """

    Inputs, Outputs = ExecCheckInputs, ExecCheckOutputs
    replace_on = frozenset({"app", "machine_id"})
    kind = "health gate"

    def _run(self, client: FlyClient, inputs: ExecCheckInputs) -> ExecCheckOutputs:
        deadline = time.monotonic() + inputs.timeout
        last: dict[str, Any] = {}

        def fail(why: str) -> FlyHealthGateFailed:
            return FlyHealthGateFailed(inputs.app, inputs.machine_id, inputs.name, inputs.command,
                                       last.get("exit_code"), last.get("output", ""), why)

        def attempt() -> bool:
            result = client.exec_machine(inputs.app, inputs.machine_id, inputs.command,
                                         timeout=max(1, min(60, int(deadline - time.monotonic()))))
            last.update(exit_code=result.exit_code, output=(result.stdout + result.stderr).strip()[-500:])
            if result.exit_code in COMMAND_MISSING:
                raise fail(f"exited {result.exit_code}: {inputs.command[0]} "
                           f"{COMMAND_MISSING[result.exit_code]}; use an image that has it")
            return result.exit_code == 0

        # The gate follows its machine's create or update, which returned at `started`: the check runs at
        # once. Only when that fails (Fly refuses exec on a machine that is not started, or the command is
        # not ready yet) does it wait for `started` (the wait endpoint) and retry with backoff.
        try:
            if attempt():
                return ExecCheckOutputs(passed_at=_now(), output=last.get("output", ""))
        except (FlyAuthError, FlyNotFound):
            raise
        except FlyAPIError as exc:
            last.update(exit_code=None, output=str(exc)[-500:])
        try:
            client.wait_machine(inputs.app, inputs.machine_id, "started",
                                timeout=max(1, int(deadline - time.monotonic())), poll=5)
        except FlyWaitTimeout:
            raise fail(f"the machine did not reach `started` within {inputs.timeout}s "
                       f"({last.get('output') or 'exec refused'})") from None
        try:
            Retrying(retry=retry_if_result(lambda ok: not ok),
                     stop=stop_after_delay(max(0.0, deadline - time.monotonic())),
                     wait=wait_exponential(multiplier=0.25, max=8))(attempt)
        except RetryError:
            raise fail(f"exited {last.get('exit_code')} for {inputs.timeout}s") from None
        return ExecCheckOutputs(passed_at=_now(), output=last.get("output", ""))

    def create_resource(self, client: FlyClient, inputs: ExecCheckInputs) -> tuple[str, ExecCheckOutputs]:
        return f"{inputs.app}/{inputs.machine_id}/{inputs.name}", self._run(client, inputs)

    def update_resource(self, client: FlyClient, id_: str, olds: ExecCheckInputs | None, inputs: ExecCheckInputs,
                        state: ExecCheckOutputs) -> ExecCheckOutputs:
        return self._run(client, inputs)

    def read_resource(self, client: FlyClient, id_: str, inputs: ExecCheckInputs,
                      state: ExecCheckOutputs) -> ExecCheckOutputs | None:
        return state if client.find_machine(inputs.app, inputs.machine_id) is not None else None


class ExecCheck(FlyResource):
    provider = ExecCheckProvider


# -- release command -------------------------------------------------------------------------------------

class ReleaseCommandInputs(ProviderInputs):
    app: str = Field(min_length=1)
    region: str = Field(pattern=r"^[a-z]{3}$")
    config: dict[str, Any]
    timeout: int = Field(default=600, ge=1, le=7200)


class ReleaseCommandOutputs(ProviderOutputs):
    machine_id: str = ""
    exit_code: int | None = None
    finished_at: str = ""


class ReleaseCommandProvider(FlyProvider[ReleaseCommandInputs, ReleaseCommandOutputs]):
    """Runs an app's release command as flyctl's deploy does: a one-off machine (restart ``no``,
    ``auto_destroy``, process group ``fly_app_release_command``), waited on with the wait endpoint, its
    exit code read from the exit event. It runs again whenever its config (image, command, env) changes."""

    Inputs, Outputs = ReleaseCommandInputs, ReleaseCommandOutputs
    replace_on = frozenset({"app"})
    adoption = ("the release machine is named after its config: a repeated create is answered already_exists "
                "and waits for the machine the first one made instead of running the release twice")
    kind = "release command"

    def _run(self, client: FlyClient, inputs: ReleaseCommandInputs) -> ReleaseCommandOutputs:
        digest = hashlib.sha256(json.dumps(inputs.config, sort_keys=True).encode()).hexdigest()[:12]
        name = f"release-{digest}"
        try:
            machine_id = client.create_machine(inputs.app, normal(inputs.config), name=name, region=inputs.region).id
        except FlyAlreadyExists as exc:
            if exc.existing_id is None:
                raise
            machine_id = exc.existing_id
        final = "destroyed" if inputs.config.get("auto_destroy") else "stopped"
        try:
            client.wait_machine(inputs.app, machine_id, final, timeout=inputs.timeout)
        except FlyNotFound:
            pass  # destroyed before the wait began: its events still tell how it ended
        except FlyWaitTimeout:
            client.delete_machine(inputs.app, machine_id, force=True)
            raise FlyReleaseCommandFailed(inputs.app, machine_id, None,
                                          f"did not finish within {inputs.timeout}s (now destroyed)") from None
        code = release_exit_code(client.list_machine_events(inputs.app, machine_id))
        if code is None:
            raise FlyReleaseCommandFailed(inputs.app, machine_id, None, "ended without an exit event")
        if code != 0:
            raise FlyReleaseCommandFailed(inputs.app, machine_id, code, f"failed with exit code {code}")
        return ReleaseCommandOutputs(machine_id=machine_id, exit_code=code, finished_at=_now())

    def create_resource(self, client: FlyClient, inputs: ReleaseCommandInputs) -> tuple[str, ReleaseCommandOutputs]:
        outs = self._run(client, inputs)
        return f"{inputs.app}/release/{outs.machine_id}", outs

    def update_resource(self, client: FlyClient, id_: str, olds: ReleaseCommandInputs | None,
                        inputs: ReleaseCommandInputs, state: ReleaseCommandOutputs) -> ReleaseCommandOutputs:
        return self._run(client, inputs)

    def read_resource(self, client: FlyClient, id_: str, inputs: ReleaseCommandInputs,
                      state: ReleaseCommandOutputs) -> ReleaseCommandOutputs | None:
        return state if client.find_app(inputs.app) is not None else None


class ReleaseCommand(FlyResource):
    provider = ReleaseCommandProvider


# -- a file on a machine ---------------------------------------------------------------------------------

class MachineFileInputs(ProviderInputs):
    app: str = Field(min_length=1)
    machine_id: str = Field(min_length=1)
    path: str = Field(pattern=r"^/", description="an absolute path on the machine")
    json_schema: dict[str, Any] | None = None
    triggers: list[Any] = Field(default_factory=list)


class MachineFileOutputs(ProviderOutputs):
    content: str = ""
    parsed: Any = None


class MachineFileProvider(FlyProvider[MachineFileInputs, MachineFileOutputs]):
    """Reads a file through exec (``cat``); with ``json_schema``, the content must be JSON valid against
    it. A missing or malformed file fails with ``FlyManifestInvalid``, naming the file and the problem.
    Reads again when ``triggers`` change (e.g. the release that writes the file ran again)."""

    Inputs, Outputs = MachineFileInputs, MachineFileOutputs
    kind = "machine file"

    def _read(self, client: FlyClient, inputs: MachineFileInputs) -> MachineFileOutputs:
        where = f"{inputs.path} on machine {inputs.machine_id} of app {inputs.app}"
        result = client.exec_machine(inputs.app, inputs.machine_id, ["cat", inputs.path])
        if result.exit_code != 0:
            raise FlyManifestInvalid(where, "could not be read: "
                                     f"{(result.stderr or result.stdout).strip() or 'missing'}")
        content = result.stdout
        parsed: Any = None
        if inputs.json_schema is not None:
            try:
                parsed = json.loads(content)
            except ValueError as exc:
                raise FlyManifestInvalid(where, f"is not valid JSON: {exc}") from None
            import jsonschema  # only needed where a schema is given

            errors = sorted(jsonschema.Draft202012Validator(inputs.json_schema).iter_errors(parsed),
                            key=lambda e: list(e.absolute_path))
            if errors:
                problems = "; ".join(f"{'/'.join(map(str, e.absolute_path)) or '(top)'}: {e.message}"
                                     for e in errors[:5])
                raise FlyManifestInvalid(where, f"is malformed: {problems}")
        return MachineFileOutputs(content=content, parsed=parsed)

    def create_resource(self, client: FlyClient, inputs: MachineFileInputs) -> tuple[str, MachineFileOutputs]:
        return f"{inputs.app}/{inputs.machine_id}:{inputs.path}", self._read(client, inputs)

    def update_resource(self, client: FlyClient, id_: str, olds: MachineFileInputs | None, inputs: MachineFileInputs,
                        state: MachineFileOutputs) -> MachineFileOutputs:
        return self._read(client, inputs)

    def read_resource(self, client: FlyClient, id_: str, inputs: MachineFileInputs,
                      state: MachineFileOutputs) -> MachineFileOutputs | None:
        return state if client.find_machine(inputs.app, inputs.machine_id) is not None else None


class MachineFile(FlyResource):
    provider = MachineFileProvider


# -- the sweeper -----------------------------------------------------------------------------------------

class MachineSweeperInputs(ProviderInputs):
    app: str = Field(min_length=1)
    wait_timeout: int = Field(default=300, ge=1, le=3600)


class MachineSweeperOutputs(ProviderOutputs):
    pass


class MachineSweeperProvider(FlyProvider[MachineSweeperInputs, MachineSweeperOutputs]):
    """Owns nothing at create; at delete destroys every machine of the app, including machines made
    outside Pulumi (e.g. by a control plane), and waits until they are gone."""

    Inputs, Outputs = MachineSweeperInputs, MachineSweeperOutputs
    replace_on = frozenset({"app"})
    kind = "machine sweeper"

    def create_resource(self, client: FlyClient, inputs: MachineSweeperInputs) -> tuple[str, MachineSweeperOutputs]:
        return f"{inputs.app}/sweeper", MachineSweeperOutputs()

    def delete_resource(self, client: FlyClient, id_: str, inputs: MachineSweeperInputs,
                        state: MachineSweeperOutputs) -> None:
        try:
            machines = [m for m in client.list_machines(inputs.app) if m.state not in ("destroyed", "destroying")]
        except FlyNotFound:  # the app is gone, and its machines with it
            return
        for machine in machines:
            client.delete_machine(inputs.app, machine.id, force=True)
        for machine in machines:
            try:
                client.wait_machine(inputs.app, machine.id, "destroyed", timeout=inputs.wait_timeout)
            except FlyNotFound:
                pass
        log.info("swept %d machine(s) of app %s", len(machines), inputs.app)

    def read_resource(self, client: FlyClient, id_: str, inputs: MachineSweeperInputs,
                      state: MachineSweeperOutputs) -> MachineSweeperOutputs | None:
        return state if client.find_app(inputs.app) is not None else None


class MachineSweeper(FlyResource):
    provider = MachineSweeperProvider
