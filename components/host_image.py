"""``HostImage``: a host image app (``basic``, ``coder``) whose release command publishes
``computers/images/<name>.json`` on the slice's NFS, read back and validated afterwards."""

from __future__ import annotations

from typing import Any

import pulumi
from pydantic import BaseModel, ConfigDict, Field

from fly.appconfig import release_command_config
from fly.providers import App, FlyConnectionArgs, IpAddress, MachineFile, ReleaseCommand, inherit_connection

from .deploy import fly_toml
from .nfs import NfsServer

IMAGE_MANIFEST_DIR = "computers/images"


class ImageManifest(BaseModel):
    """What a host image publishes about itself; the control plane reads it to boot computers."""

    model_config = ConfigDict(extra="allow")
    name: str = Field(min_length=1)
    image: str = Field(min_length=3)
    digest: str = Field(pattern=r"^sha256:[a-f0-9]{64}$")
    published_at: str = Field(min_length=1)


def manifest_schema(name: str) -> dict[str, Any]:
    schema = ImageManifest.model_json_schema()
    schema["properties"]["name"]["const"] = name  # basic.json must describe basic, not coder
    return schema


class HostImage(pulumi.ComponentResource):
    def __init__(self, name: str, *, image_name: str, prefix: str, org_slug: pulumi.Input[str], region: str,
                 image: str, env: dict[str, str], nfs: NfsServer, connection: FlyConnectionArgs | None = None,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("artifact:slice:HostImage", name, None, opts)
        inherit_connection(self, opts, connection)
        child = pulumi.ResourceOptions(parent=self)
        toml = fly_toml(f"host-{image_name}")
        config = release_command_config(toml, image=image, env={"PRIMARY_REGION": region, **env})
        if config is None:
            raise ValueError(f"deploy/fly.host-{image_name}.toml has no [deploy] release_command; host images "
                             "publish their manifest from it (add release_command = \"...\")")
        self.image_name = image_name
        self.image = image
        # The runbook's name, `<prefix>-fly-host-<name>`. Stacks made before it have `<prefix>-image-<name>`:
        # Fly cannot rename an app, so theirs keeps that name (former_names) rather than being replaced.
        self.app = App(f"{name}-app", name=f"{prefix}-fly-host-{image_name}",
                       former_names=[f"{prefix}-image-{image_name}"], org_slug=org_slug, opts=child)
        self.flycast = IpAddress(f"{name}-flycast", app=self.app.name, type="private_v6", org_slug=org_slug,
                                 opts=child)
        # The release command writes to NFS: it waits for the NFS gate and nothing else.
        self.release = ReleaseCommand(f"{name}-release", app=self.app.name, region=region, config=config,
                                      opts=pulumi.ResourceOptions(parent=self, depends_on=[nfs.gate]))
        path = f"{nfs.export_path}/{IMAGE_MANIFEST_DIR}/{image_name}.json"
        self.manifest_file = MachineFile(
            f"{name}-manifest", app=nfs.app.name, machine_id=nfs.machine.machine_id, path=path,
            json_schema=manifest_schema(image_name), triggers=[self.release.machine_id],
            opts=child)
        self.manifest = self.manifest_file.parsed
        self.register_outputs({"app": self.app.name, "manifest": self.manifest})
