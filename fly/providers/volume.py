"""A Fly volume. Volumes only grow (``extend``); a change of app, name, region or encryption is a new
volume, which means new, empty storage: the component decides whether that is allowed (protect)."""

from __future__ import annotations

import logging
from typing import Any

import pulumi
from pulumi.dynamic import CheckFailure, CreateResult, Resource, UpdateResult
from pydantic import Field

from ..client import FlyClient
from ..models import Volume as VolumeModel
from .base import FlyProvider, ProviderInputs, _normal
from .connection_args import FlyConnectionArgs

log = logging.getLogger("fly.providers")


class VolumeInputs(ProviderInputs):
    app: str = Field(min_length=1)
    name: str = Field(pattern=r"^[a-z0-9_]{1,30}$", description="lowercase letters, digits and underscores")
    region: str = Field(pattern=r"^[a-z]{3}$", description="a three-letter Fly region code such as syd")
    size_gb: int = Field(ge=1, le=500)
    encrypted: bool = True


class VolumeProvider(FlyProvider):
    inputs_model = VolumeInputs
    replace_on = frozenset({"app", "name", "region", "encrypted"})
    kind = "volume"

    def extra_checks(self, olds: dict[str, Any], news: dict[str, Any]) -> list[CheckFailure]:
        old_size, new_size = _normal(olds.get("size_gb")), _normal(news.get("size_gb"))
        if isinstance(old_size, int) and isinstance(new_size, int) and new_size < old_size:
            return [CheckFailure("size_gb", f"volume size_gb: {new_size} is smaller than the current "
                                            f"{old_size} GB; Fly volumes can only grow, keep {old_size} or more")]
        return []

    def create(self, props: dict[str, Any]) -> CreateResult:
        inputs = VolumeInputs.model_validate(self.desired(props))
        with self.client(props) as client:
            # A rerun after a crash adopts the unattached volume of this name that the lost run made,
            # instead of leaving it behind and making a second one.
            existing = [v for v in client.list_volumes(inputs.app)
                        if v.name == inputs.name and v.region == inputs.region and not v.attached_machine_id
                        and v.state not in ("destroyed", "destroying", "pending_destroy")]
            if existing:
                volume = existing[0]
                log.info("adopting existing volume %s (%s) of app %s", volume.id, volume.name, inputs.app)
                if volume.size_gb < inputs.size_gb:
                    volume = client.extend_volume(inputs.app, volume.id, inputs.size_gb)
            else:
                volume = client.create_volume(inputs.app, name=inputs.name, region=inputs.region,
                                              size_gb=inputs.size_gb, encrypted=inputs.encrypted)
        return CreateResult(volume.id, {**props, **_outputs(volume)})

    def update(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        inputs = VolumeInputs.model_validate(self.desired(news))
        with self.client(news) as client:
            volume = client.get_volume(inputs.app, id_)
            if volume.size_gb < inputs.size_gb:
                volume = client.extend_volume(inputs.app, id_, inputs.size_gb)
        return UpdateResult({**news, **_outputs(volume)})

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        with self.client(props) as client:
            client.delete_volume(props["app"], id_)

    def read_live(self, client: FlyClient, id_: str, props: dict[str, Any]) -> dict[str, Any] | None:
        volume = client.find_volume(props["app"], id_)
        return None if volume is None else {**_outputs(volume), "size_gb": volume.size_gb}


def _outputs(volume: VolumeModel) -> dict[str, Any]:
    return {"volume_id": volume.id, "zone": volume.zone or "", "state": volume.state or "",
            "attached_machine_id": volume.attached_machine_id or ""}


class Volume(Resource):
    """A Fly volume. Outputs: volume_id, zone, state, attached_machine_id."""

    volume_id: pulumi.Output[str]
    zone: pulumi.Output[str]
    state: pulumi.Output[str]
    size_gb: pulumi.Output[int]
    region: pulumi.Output[str]
    name: pulumi.Output[str]

    def __init__(self, resource_name: str, *, app: pulumi.Input[str], name: pulumi.Input[str],
                 region: pulumi.Input[str], size_gb: pulumi.Input[int], connection: FlyConnectionArgs,
                 encrypted: bool = True, opts: pulumi.ResourceOptions | None = None) -> None:
        props: dict[str, Any] = {"app": app, "name": name, "region": region, "size_gb": size_gb,
                                 "encrypted": encrypted, "volume_id": None, "zone": None, "state": None,
                                 "attached_machine_id": None, **connection.props()}
        super().__init__(VolumeProvider(), resource_name, props, connection.secret_opts(opts))
