"""A Fly machine. Config changes are applied in place (update under a lease, pinned to the version we
read), and a wait on Fly's wait endpoint follows every launch; a replace only where Fly can't update in
place: another app or region, or another volume mounted. A machine that crashes on boot is reported as
crashed, with its exit code, as soon as a wait window passes without it starting."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from ..errors import FlyAlreadyExists, FlyMachineDidNotStart, FlyNotFound, FlyWaitTimeout
from ..models import Machine as MachineModel
from .base import FlyProvider, FlyResource, ProviderInputs, ProviderOutputs, contains_unknown, normal

if TYPE_CHECKING:  # the program process never needs the HTTP client (nor its import time)
    from ..client import FlyClient

# How long one wait call may go without the machine starting before its events are read for a crash.
CRASH_CHECK_SECONDS = 5
NOT_RUNNING = ("stopped", "suspended", "failed")


class MountInput(BaseModel):
    model_config = ConfigDict(extra="allow")
    volume: str = Field(min_length=1)
    path: str = Field(pattern=r"^/", description="an absolute path")


class MachineConfigInput(BaseModel):
    """What this project sets in a machine config; other Fly fields pass through untouched."""

    model_config = ConfigDict(extra="allow")
    image: str = Field(min_length=1)
    env: dict[str, str] = Field(default_factory=dict)
    metadata: dict[str, str] = Field(default_factory=dict)
    mounts: list[MountInput] = Field(default_factory=list)
    auto_destroy: bool | None = None


class MachineInputs(ProviderInputs):
    app: str = Field(min_length=1)
    name: str = Field(min_length=1, max_length=63)
    region: str = Field(pattern=r"^[a-z]{3}$", description="a three-letter Fly region code such as syd")
    config: MachineConfigInput
    skip_launch: bool = False
    min_secrets_version: int | None = None
    wait_timeout: int = Field(default=300, ge=1, le=3600)


class MachineOutputs(ProviderOutputs):
    machine_id: str = ""
    state: str = ""
    instance_id: str = ""
    private_ip: str = ""
    image_digest: str = ""
    updated_at: str = ""


def _mounted_volumes(props: dict[str, Any]) -> Any:
    config = props.get("config")
    if not isinstance(config, dict):
        return config  # unknown during preview
    mounts = config.get("mounts") or []
    if not isinstance(mounts, list):
        return mounts
    return [m.get("volume") if isinstance(m, dict) else m for m in mounts]


class MachineProvider(FlyProvider[MachineInputs, MachineOutputs]):
    Inputs, Outputs = MachineInputs, MachineOutputs
    replace_on = frozenset({"app", "region"})
    # Names are unique in an app: the replacement takes the old machine's name (and its volume's place).
    delete_before_replace = True
    adoption = ("machine names are unique in an app: a create answered 409 already_exists adopts the machine "
                "of that name (the answer names its id) and brings it to the desired config under a lease")
    kind = "machine"

    def needs_replace(self, key: str, olds: dict[str, Any], news: dict[str, Any]) -> bool:
        # Another volume mounted. A mount not known yet is a volume being made anew (a volume's id is known
        # through its updates), and the engine asks this while planning a volume's delete-before-replace.
        new_mounts = _mounted_volumes(news)
        return key == "config" and (contains_unknown(new_mounts) or _mounted_volumes(olds) != new_mounts)

    def drifted(self, olds: dict[str, Any], news: dict[str, Any]) -> bool:
        # Refresh found it stopped (or crashed) though it should run: `up` starts it again.
        return olds.get("state") in NOT_RUNNING and not news.get("skip_launch")

    def create_resource(self, client: FlyClient, inputs: MachineInputs) -> tuple[str, MachineOutputs]:
        config = normal(inputs.config.model_dump(exclude_none=True))  # the engine hands ints over as floats
        try:
            machine = client.create_machine(
                inputs.app, config, name=inputs.name, region=inputs.region, skip_launch=inputs.skip_launch,
                min_secrets_version=inputs.min_secrets_version)
        except FlyAlreadyExists as exc:
            existing_id = exc.existing_id or next(
                (m.id for m in client.list_machines(inputs.app) if m.name == inputs.name and m.state != "destroyed"),
                None)
            if existing_id is None:
                raise
            machine = self._apply(client, inputs, existing_id, config)
            return machine.id, _outputs(machine, None if inputs.skip_launch else "started")
        self._settle(client, inputs, machine)
        return machine.id, _outputs(machine, None if inputs.skip_launch else "started")

    def update_resource(self, client: FlyClient, id_: str, olds: MachineInputs | None, inputs: MachineInputs,
                        state: MachineOutputs) -> MachineOutputs:
        if olds is not None and normal(olds.model_dump()) == normal(inputs.model_dump()):
            # Only drift: the machine should run and does not. Start it, and wait.
            client.start_machine(inputs.app, id_)
            self._settle(client, inputs, None, id_)
            return state.model_copy(update={"state": "started"})
        machine = self._apply(client, inputs, id_, normal(inputs.config.model_dump(exclude_none=True)))
        return _outputs(machine, None if inputs.skip_launch else "started")

    def _apply(self, client: FlyClient, inputs: MachineInputs, machine_id: str,
               config: dict[str, Any]) -> MachineModel:
        """Update in place under a lease, pinned to the version just read, so neither a concurrent
        deployer nor a retried request can apply a stale config."""
        with client.lease(inputs.app, machine_id, ttl=max(60, inputs.wait_timeout),
                          description="pulumi update") as lease:
            current = client.get_machine(inputs.app, machine_id)
            machine = client.update_machine(
                inputs.app, machine_id, config, lease_nonce=lease.nonce,
                current_version=current.current_version, skip_launch=inputs.skip_launch or None,
                min_secrets_version=inputs.min_secrets_version)
        self._settle(client, inputs, machine)
        return machine

    @staticmethod
    def _settle(client: FlyClient, inputs: MachineInputs, machine: MachineModel | None,
                machine_id: str | None = None) -> None:
        if inputs.skip_launch:
            return
        id_ = machine.id if machine else machine_id or ""
        try:
            client.wait_machine(inputs.app, id_, "started", timeout=inputs.wait_timeout,
                                instance_id=machine.instance_id if machine else None, poll=CRASH_CHECK_SECONDS)
        except FlyWaitTimeout:
            raise FlyMachineDidNotStart(inputs.app, id_, inputs.wait_timeout) from None

    def delete_resource(self, client: FlyClient, id_: str, inputs: MachineInputs, state: MachineOutputs) -> None:
        client.delete_machine(inputs.app, id_, force=True)  # a 404 (machine or app gone) is success
        # Its volume is free only once the machine is destroyed: wait, so a volume delete that follows
        # does not race the detach.
        try:
            client.wait_machine(inputs.app, id_, "destroyed", timeout=inputs.wait_timeout)
        except FlyNotFound:
            pass

    def read_resource(self, client: FlyClient, id_: str, inputs: MachineInputs,
                      state: MachineOutputs) -> MachineOutputs | None:
        machine = client.find_machine(inputs.app, id_)
        return None if machine is None else _outputs(machine)


def _outputs(machine: MachineModel, state: str | None = None) -> MachineOutputs:
    return MachineOutputs(
        machine_id=machine.id,
        state=state or machine.state,
        instance_id=machine.current_version or "",
        private_ip=machine.private_ip or "",
        image_digest=(machine.image_ref.digest if machine.image_ref and machine.image_ref.digest else ""),
        updated_at=machine.updated_at or "",
    )


class Machine(FlyResource):
    """A Fly machine."""

    provider = MachineProvider
