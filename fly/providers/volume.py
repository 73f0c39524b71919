"""A Fly volume. Volumes only grow (``extend``, in place); a change of app, name, region or encryption is
a new volume, which means new, empty storage: with ``protect_data`` such a replace is refused in ``check``
with what to do instead."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pulumi
from pulumi.dynamic import CheckFailure
from pydantic import Field

from ..models import Volume as VolumeModel
from .base import FlyProvider, FlyResource, ProviderInputs, ProviderOutputs, is_unknown, normal

if TYPE_CHECKING:  # the program process never needs the HTTP client (nor its import time)
    from ..client import FlyClient

GONE = ("destroyed", "destroying", "pending_destroy")


class VolumeInputs(ProviderInputs):
    app: str = Field(min_length=1)
    name: str = Field(pattern=r"^[a-z0-9_]{1,30}$", description="lowercase letters, digits and underscores")
    region: str = Field(pattern=r"^[a-z]{3}$", description="a three-letter Fly region code such as syd")
    size_gb: int = Field(ge=1, le=500)
    encrypted: bool = True
    # Refuse a change that needs a new (empty) volume; what to do instead is in the message.
    protect_data: bool = False


class VolumeOutputs(ProviderOutputs):
    volume_id: str = ""
    zone: str = ""
    state: str = ""
    attached_machine_id: str = ""


class VolumeProvider(FlyProvider[VolumeInputs, VolumeOutputs]):
    Inputs, Outputs = VolumeInputs, VolumeOutputs
    replace_on = frozenset({"app", "name", "region", "encrypted"})
    settings_only = frozenset({"protect_data"})
    # A new volume means new storage anyway: the old one (and the machine on it) goes first, so the app
    # never holds two volumes of the name and nothing writes to the one about to go.
    delete_before_replace = True
    adoption = ("volume names are not unique on Fly: an unattached volume of this name and region in the app "
                "is the one a lost create made, and is adopted (and grown to size) instead of making another")
    kind = "volume"

    def extra_checks(self, olds: dict[str, Any], news: dict[str, Any]) -> list[CheckFailure]:
        failures = []
        old_size, new_size = normal(olds.get("size_gb")), normal(news.get("size_gb"))
        if isinstance(old_size, int) and isinstance(new_size, int) and new_size < old_size:
            failures.append(CheckFailure("size_gb", f"volume size_gb: {new_size} is smaller than the current "
                                                    f"{old_size} GB; Fly volumes can only grow, keep {old_size} "
                                                    "or more"))
        if olds.get("app") and news.get("protect_data") is True:  # check's olds: the inputs of the last up
            moved = [k for k in sorted(self.replace_on) if k in olds and not is_unknown(news.get(k))
                     and normal(olds.get(k)) != normal(news.get(k))]
            if moved:
                changes = ", ".join(f"{k} {olds.get(k)!r} -> {news.get(k)!r}" for k in moved)
                failures.append(CheckFailure(moved[0], (
                    f"volume {olds.get('name')} of app {olds.get('app')}: {changes} needs a new, empty volume "
                    "(Fly cannot move a volume's data) and this volume is protected. To move it: copy the data "
                    "off (e.g. `fly volumes snapshots create`), turn protection off with `pulumi config set "
                    "artifact-slice:protectVolumes false`, run `pulumi up`, restore the data, and turn "
                    "protection back on; or keep the old value")))
        return failures

    def create_resource(self, client: FlyClient, inputs: VolumeInputs) -> tuple[str, VolumeOutputs]:
        existing = [v for v in client.list_volumes(inputs.app)
                    if v.name == inputs.name and v.region == inputs.region and not v.attached_machine_id
                    and v.state not in GONE]
        if existing:
            volume = existing[0]
            if volume.size_gb < inputs.size_gb:
                volume = client.extend_volume(inputs.app, volume.id, inputs.size_gb)
        else:
            volume = client.create_volume(inputs.app, name=inputs.name, region=inputs.region,
                                          size_gb=inputs.size_gb, encrypted=inputs.encrypted)
        return volume.id, _outputs(volume)

    def update_resource(self, client: FlyClient, id_: str, olds: VolumeInputs | None, inputs: VolumeInputs,
                        state: VolumeOutputs) -> VolumeOutputs:
        if olds is not None and inputs.size_gb <= olds.size_gb:
            return state
        return _outputs(client.extend_volume(inputs.app, id_, inputs.size_gb))

    def delete_resource(self, client: FlyClient, id_: str, inputs: VolumeInputs, state: VolumeOutputs) -> None:
        client.delete_volume(inputs.app, id_)

    def read_resource(self, client: FlyClient, id_: str, inputs: VolumeInputs,
                      state: VolumeOutputs) -> VolumeOutputs | None:
        volume = client.find_volume(inputs.app, id_)
        return None if volume is None else _outputs(volume)


def _outputs(volume: VolumeModel) -> VolumeOutputs:
    return VolumeOutputs(volume_id=volume.id, zone=volume.zone or "", state=volume.state or "",
                         attached_machine_id=volume.attached_machine_id or "")


class Volume(FlyResource):
    """A Fly volume."""

    provider = VolumeProvider

    @property
    def mount_id(self) -> pulumi.Output[str]:
        """The id a machine's ``mounts`` takes: the resource id (the volume's Fly id), not the ``volume_id``
        output. An extend keeps the id, and a preview knows it, where the outputs of a dynamic resource
        being updated are unknown until the update (the dynamic provider protocol has no "stable"
        outputs): mounting ``volume_id`` would plan the machine's replacement for a mere grow."""
        return self.id
