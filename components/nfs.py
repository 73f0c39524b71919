"""``NfsServer``: the slice's NFS tier, ``<prefix>-nfs`` with volume ``nfsdata`` and one machine."""

from __future__ import annotations

from typing import Any

import pulumi

from fly.providers import App, FlyConnectionArgs, Machine, Volume

NFS_VOLUME_NAME = "nfsdata"
NFS_EXPORT_PATH = "/data"


class NfsServer(pulumi.ComponentResource):
    """The NFS app, its data volume and the machine that serves it. ``ready`` resolves once the
    machine is started; everything that needs NFS depends on this component."""

    app_name: pulumi.Output[str]
    machine: Machine
    volume: Volume

    def __init__(self, name: str, *, prefix: str, org_slug: str, region: str, volume_size_gb: int,
                 image: str, connection: FlyConnectionArgs, protect_volume: bool,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("artifact:slice:NfsServer", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        self.app = App(f"{name}-app", name=f"{prefix}-nfs", org_slug=org_slug, connection=connection, opts=child)
        self.app_name = self.app.name
        # Long-lived stacks protect the data volume: `pulumi destroy` stops at it unless unprotected.
        self.volume = Volume(
            f"{name}-volume", app=self.app.name, name=NFS_VOLUME_NAME, region=region, size_gb=volume_size_gb,
            connection=connection, opts=pulumi.ResourceOptions(parent=self, protect=protect_volume))
        config: pulumi.Input[dict[str, Any]] = self.volume.volume_id.apply(lambda volume_id: {
            "image": image,
            "env": {"NFS_EXPORT_PATH": NFS_EXPORT_PATH},
            "mounts": [{"volume": volume_id, "path": NFS_EXPORT_PATH}],
            "restart": {"policy": "always"},
            "guest": {"cpu_kind": "shared", "cpus": 1, "memory_mb": 512},
            "metadata": {"fly_platform_version": "v2", "fly_process_group": "app"},
        })
        self.machine = Machine(
            f"{name}-machine", app=self.app.name, name=f"{prefix}-nfs-0", region=region, config=config,
            connection=connection, opts=child)

        self.register_outputs({"app_name": self.app_name, "machine_id": self.machine.machine_id,
                               "volume_id": self.volume.volume_id})

    def manifest(self) -> pulumi.Output[dict[str, Any]]:
        return pulumi.Output.all(
            self.app.name, self.app.app_id, self.machine.machine_id, self.machine.state,
            self.machine.updated_at, self.machine.region, self.volume.volume_id, self.volume.zone,
            self.volume.size_gb,
        ).apply(lambda v: {
            "name": v[0], "id": v[1], "region": v[5],
            "machines": [{"id": v[2], "state": v[3], "updated_at": v[4]}],
            "volumes": [{"id": v[6], "name": NFS_VOLUME_NAME, "zone": v[7], "size_gb": v[8]}],
        })
