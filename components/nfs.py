"""``NfsServer``: the slice's NFS tier, ``<prefix>-nfs`` with volume ``nfsdata``, one machine from
``deploy/fly.nfs.toml``, a Flycast address, and the health gate everything needing NFS waits for."""

from __future__ import annotations

from typing import Any, Sequence

import pulumi

from fly.appconfig import machine_config
from fly.providers import App, ExecCheck, FlyConnectionArgs, IpAddress, Machine, Volume, inherit_connection

from .deploy import fly_toml

NFS_VOLUME_NAME = "nfsdata"
# The fly-nfs image's own check: mounts its export over NFS from inside the machine and writes a file.
SELF_MOUNT_CHECK = ["/fly-nfs/scripts/self-mount-check.sh"]


class NfsServer(pulumi.ComponentResource):
    """``gate`` passes only when the self-mount check passes; depend on it, not on the machine.

    ``volume_after``: what the volume must be deleted before (the slice's teardown order, see
    ``OrgSlice``); it is created after them."""

    def __init__(self, name: str, *, prefix: str, org_slug: pulumi.Input[str], region: str, volume_size_gb: int,
                 image: str, protect_volume: bool, gate_timeout: int = 180,
                 volume_after: Sequence[pulumi.Input[pulumi.Resource]] = (),
                 connection: FlyConnectionArgs | None = None, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("artifact:slice:NfsServer", name, None, opts)
        inherit_connection(self, opts, connection)
        child = pulumi.ResourceOptions(parent=self)
        toml = fly_toml("nfs")
        self.export_path = next((m.destination for m in toml.mounts if m.source == NFS_VOLUME_NAME), "/data")

        self.app = App(f"{name}-app", name=f"{prefix}-nfs", org_slug=org_slug, opts=child)
        # Long-lived stacks protect the data volume: `pulumi destroy` stops at it unless unprotected, and a
        # change that needs a new volume (region) is refused with what to do (`protect_data`).
        self.volume = Volume(
            f"{name}-volume", app=self.app.name, name=NFS_VOLUME_NAME, region=region, size_gb=volume_size_gb,
            protect_data=protect_volume,
            opts=pulumi.ResourceOptions(parent=self, protect=protect_volume, depends_on=list(volume_after)))
        self.flycast = IpAddress(f"{name}-flycast", app=self.app.name, type="private_v6", org_slug=org_slug,
                                 opts=child)
        config: pulumi.Output[dict[str, Any]] = self.volume.mount_id.apply(lambda volume_id: machine_config(
            toml, image=image, mounts={NFS_VOLUME_NAME: volume_id}, env={"PRIMARY_REGION": region}))
        self.machine = Machine(f"{name}-machine", app=self.app.name, name=f"{prefix}-nfs-0", region=region,
                               config=config, opts=child)
        self.gate = ExecCheck(f"{name}-self-mount", app=self.app.name, machine_id=self.machine.machine_id,
                              instance_id=self.machine.instance_id, name="self-mount", command=SELF_MOUNT_CHECK,
                              timeout=gate_timeout, opts=child)
        self.register_outputs({"app": self.app.name, "machine_id": self.machine.machine_id,
                               "volume_id": self.volume.volume_id, "gate_passed_at": self.gate.passed_at})
