"""``NfsServer``: the slice's NFS tier, ``<prefix>-nfs`` with volume ``nfsdata``, one machine from
``deploy/fly.nfs.toml``, a Flycast address, and the health gate everything needing NFS waits for."""

from __future__ import annotations

from typing import Any

import pulumi

from fly.appconfig import machine_config
from fly.providers import App, ExecCheck, FlyConnectionArgs, IpAddress, Machine, Volume

from .deploy import fly_toml

NFS_VOLUME_NAME = "nfsdata"
# The fly-nfs image's own check: mounts its export over NFS from inside the machine and writes a file.
SELF_MOUNT_CHECK = ["/fly-nfs/scripts/self-mount-check.sh"]


class NfsServer(pulumi.ComponentResource):
    """``gate`` passes only when the self-mount check passes; depend on it, not on the machine."""

    def __init__(self, name: str, *, prefix: str, org_slug: pulumi.Input[str], region: str, volume_size_gb: int,
                 image: str, connection: FlyConnectionArgs, protect_volume: bool, gate_timeout: int = 180,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("artifact:slice:NfsServer", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        toml = fly_toml("nfs")
        self.export_path = next((m.destination for m in toml.mounts if m.source == NFS_VOLUME_NAME), "/data")

        self.app = App(f"{name}-app", name=f"{prefix}-nfs", org_slug=org_slug, connection=connection, opts=child)
        # Long-lived stacks protect the data volume: `pulumi destroy` stops at it unless unprotected.
        self.volume = Volume(
            f"{name}-volume", app=self.app.name, name=NFS_VOLUME_NAME, region=region, size_gb=volume_size_gb,
            connection=connection, opts=pulumi.ResourceOptions(parent=self, protect=protect_volume))
        self.flycast = IpAddress(f"{name}-flycast", app=self.app.name, type="private_v6", org_slug=org_slug,
                                 connection=connection, opts=child)
        config: pulumi.Output[dict[str, Any]] = self.volume.volume_id.apply(lambda volume_id: machine_config(
            toml, image=image, mounts={NFS_VOLUME_NAME: volume_id}, env={"PRIMARY_REGION": region}))
        self.machine = Machine(f"{name}-machine", app=self.app.name, name=f"{prefix}-nfs-0", region=region,
                               config=config, connection=connection, opts=child)
        self.gate = ExecCheck(f"{name}-self-mount", app=self.app.name, machine_id=self.machine.machine_id,
                              instance_id=self.machine.instance_id, name="self-mount", command=SELF_MOUNT_CHECK,
                              timeout=gate_timeout, connection=connection, opts=child)
        self.register_outputs({"app": self.app.name, "machine_id": self.machine.machine_id,
                               "volume_id": self.volume.volume_id, "gate_passed_at": self.gate.passed_at})
