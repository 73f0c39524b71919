"""A Fly machine. Config changes are applied in place (update under a lease, pinned to the version we
read), and a wait on Fly's wait endpoint follows every launch; a replace only where Fly can't update
in place: another app or region, or another volume mounted."""

from __future__ import annotations

import logging
from typing import Any

import pulumi
from pulumi.dynamic import CreateResult, Resource, UpdateResult
from pydantic import BaseModel, ConfigDict, Field

from ..client import FlyClient
from ..models import Machine as MachineModel
from .base import FlyProvider, ProviderInputs, _normal
from .connection_args import FlyConnectionArgs

log = logging.getLogger("fly.providers")


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


def _mounted_volumes(props: dict[str, Any]) -> list[str]:
    return [m.get("volume") for m in ((props.get("config") or {}).get("mounts") or [])]


class MachineProvider(FlyProvider):
    inputs_model = MachineInputs
    replace_on = frozenset({"app", "region"})
    kind = "machine"

    def needs_replace(self, key: str, olds: dict[str, Any], news: dict[str, Any]) -> bool:
        return key == "config" and _mounted_volumes(olds) != _mounted_volumes(news)

    def create(self, props: dict[str, Any]) -> CreateResult:
        inputs = MachineInputs.model_validate(self.desired(props))
        config = _normal(inputs.config.model_dump(exclude_none=True))  # the engine hands ints over as floats
        with self.client(props) as client:
            # A rerun after a crash finds the machine the lost run created (by its name) and brings it
            # to the desired config instead of creating a second one.
            existing = [m for m in client.list_machines(inputs.app) if m.name == inputs.name
                        and m.state not in ("destroyed", "destroying")]
            if existing:
                log.info("adopting existing machine %s (%s) of app %s", existing[0].id, inputs.name, inputs.app)
                machine = self._apply(client, inputs, existing[0].id, config)
            else:
                machine = client.create_machine(
                    inputs.app, config, name=inputs.name, region=inputs.region, skip_launch=inputs.skip_launch,
                    min_secrets_version=inputs.min_secrets_version)
                machine = self._settle(client, inputs, machine)
        return CreateResult(machine.id, {**props, **_outputs(machine)})

    def update(self, id_: str, _olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        inputs = MachineInputs.model_validate(self.desired(news))
        config = _normal(inputs.config.model_dump(exclude_none=True))  # the engine hands ints over as floats
        with self.client(news) as client:
            machine = self._apply(client, inputs, id_, config)
        return UpdateResult({**news, **_outputs(machine)})

    def _apply(self, client: FlyClient, inputs: MachineInputs, machine_id: str,
               config: dict[str, Any]) -> MachineModel:
        """Update in place under a lease, pinned to the version just read, so neither a concurrent
        deployer nor a retried request can apply a stale config."""
        with client.lease(inputs.app, machine_id, ttl=max(60, inputs.wait_timeout),
                          description="pulumi update") as lease:
            current = client.get_machine(inputs.app, machine_id)
            keep = (current.config.get("metadata") or {})
            config = {**config, "metadata": {**{k: v for k, v in keep.items() if k.startswith("fly_client_")},
                                             **config.get("metadata", {})}}
            machine = client.update_machine(
                inputs.app, machine_id, config, lease_nonce=lease.nonce,
                current_version=current.current_version, skip_launch=inputs.skip_launch or None,
                min_secrets_version=inputs.min_secrets_version)
        return self._settle(client, inputs, machine)

    def _settle(self, client: FlyClient, inputs: MachineInputs, machine: MachineModel) -> MachineModel:
        if inputs.skip_launch:
            return machine
        client.wait_machine(inputs.app, machine.id, "started", timeout=inputs.wait_timeout,
                            instance_id=machine.instance_id)
        return client.get_machine(inputs.app, machine.id)

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        app = props["app"]
        with self.client(props) as client:
            if client.find_machine(app, id_) is None:
                return
            client.delete_machine(app, id_, force=True)
            # Its volume is free only once the machine is destroyed: wait, so a volume delete that
            # follows does not race the detach.
            if client.find_machine(app, id_) is not None:
                client.wait_machine(app, id_, "destroyed", timeout=_normal(props.get("wait_timeout")) or 300)

    def read_live(self, client: FlyClient, id_: str, props: dict[str, Any]) -> dict[str, Any] | None:
        machine = client.find_machine(props["app"], id_)
        return None if machine is None else _outputs(machine)


def _outputs(machine: MachineModel) -> dict[str, Any]:
    return {
        "machine_id": machine.id,
        "state": machine.state,
        "instance_id": machine.current_version or "",
        "private_ip": machine.private_ip or "",
        "image_digest": (machine.image_ref.digest if machine.image_ref and machine.image_ref.digest else ""),
        "updated_at": machine.updated_at or "",
    }


class Machine(Resource):
    """A Fly machine. Outputs: machine_id, state, instance_id, private_ip, image_digest, updated_at."""

    machine_id: pulumi.Output[str]
    state: pulumi.Output[str]
    instance_id: pulumi.Output[str]
    private_ip: pulumi.Output[str]
    image_digest: pulumi.Output[str]
    updated_at: pulumi.Output[str]
    region: pulumi.Output[str]
    name: pulumi.Output[str]

    def __init__(self, resource_name: str, *, app: pulumi.Input[str], name: pulumi.Input[str],
                 region: pulumi.Input[str], config: pulumi.Input[dict[str, Any]], connection: FlyConnectionArgs,
                 skip_launch: bool = False, min_secrets_version: pulumi.Input[int] | None = None,
                 wait_timeout: int = 300, opts: pulumi.ResourceOptions | None = None) -> None:
        props: dict[str, Any] = {
            "app": app, "name": name, "region": region, "config": config, "skip_launch": skip_launch,
            "min_secrets_version": min_secrets_version, "wait_timeout": wait_timeout,
            "machine_id": None, "state": None, "instance_id": None, "private_ip": None,
            "image_digest": None, "updated_at": None, **connection.props()}
        super().__init__(MachineProvider(), resource_name, props, connection.secret_opts(opts))
