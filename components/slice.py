"""``OrgSlice``: the provisioning runbook's phases 1 to 7 as one graph.

The dependencies state the runbook's gates and its teardown order, and nothing more:
- phase 1: the org is looked up (or created); every app needs it;
- phase 2: NFS app, volume, machine, then the self-mount gate;
- phase 3: router and exec machines wait for the gate; exec waits for the router;
- phase 4: each host image's release command waits for the gate; its manifest is read back after it;
- every app's Flycast address needs only its app, so they run in parallel;
- phase 6 validation runs last, with the org token, and fails the update when the slice is not right;
- the teardown order: see the comment at its edges in ``OrgSlice.__init__``.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pulumi

from controlplane.phase6 import SliceValidation
from fly.providers import FlyConnectionArgs, Organization, OrgToken, inherit_connection

from .config import FlyEndpoint, SliceConfig, SliceSecrets
from .deploy import default_image
from .host_image import HostImage
from .nfs import NFS_VOLUME_NAME, NfsServer
from .services import ExecService, Router, dc_env
from .worker_pool import WorkerPool

HOST_IMAGES = ("basic", "coder")


class _Later:
    """A dependency on a resource made further down in the program (``depends_on`` takes Outputs)."""

    def __init__(self) -> None:
        loop = asyncio.get_event_loop()
        self._resource: asyncio.Future[pulumi.Resource] = loop.create_future()
        known, secret = loop.create_future(), loop.create_future()
        known.set_result(True)
        secret.set_result(False)
        self.output: pulumi.Output[pulumi.Resource] = pulumi.Output(set(), self._resource, known, secret)

    def resolve(self, resource: pulumi.Resource) -> None:
        self._resource.set_result(resource)


def _machine_entry(machine: Any) -> pulumi.Output[dict[str, Any]]:
    return pulumi.Output.all(machine.machine_id, machine.state, machine.updated_at).apply(
        lambda v: {"id": v[0], "state": v[1], "updated_at": v[2]})


class OrgSlice(pulumi.ComponentResource):
    def __init__(self, name: str, *, config: SliceConfig, endpoint: FlyEndpoint, secrets: SliceSecrets,
                 connection: FlyConnectionArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("artifact:slice:OrgSlice", name, None, opts)
        inherit_connection(self, opts, connection)  # every Fly resource below finds it through its parent
        child = pulumi.ResourceOptions(parent=self)
        prefix, region = config.prefix, config.primary_region
        images = {
            "nfs": config.nfs_image or default_image("nfs"),
            "router": config.router_image or default_image("router"),
            "exec": config.exec_image or default_image("exec"),
            "worker": config.worker_image or default_image("worker-pool"),
            "basic": config.basic_image or default_image("host-basic"),
            "coder": config.coder_image or default_image("host-coder"),
        }
        env = dc_env(prefix, config.domain)

        # The teardown order is the runbook's, and these edges are what enforce it (Pulumi deletes a
        # resource before everything it depends on, and creates in the opposite order):
        #   1. worker machines: the pool's sweeper depends on the router and exec machines;
        #   2. router and exec machines: they depend on the NFS gate, which depends on the NFS machine;
        #   3. the NFS machine: it mounts the volume;
        #   4. the volume: it depends on the control plane's token;
        #   5. the token: it depends on every app;
        #   6. the apps.
        # (`tests/e2e/test_teardown_order.py` checks it in flysim's call log.) The cost at create time: the
        # volume, and so the NFS critical path, waits for the token, which waits for every app create.
        token_later = _Later()

        # Phase 1
        self.org = Organization("org", slug=config.org, create_if_missing=config.create_org, opts=child)
        org_slug = self.org.slug

        # Phase 2
        self.nfs = NfsServer("nfs", prefix=prefix, org_slug=org_slug, region=region,
                             volume_size_gb=config.nfs_volume_size_gb, image=images["nfs"],
                             protect_volume=config.protect_volumes, gate_timeout=config.nfs_gate_timeout,
                             volume_after=[token_later.output], opts=child)

        # Phase 3
        clerk: dict[str, pulumi.Input[str]] = {}
        if secrets.clerk_publishable_key is not None:
            clerk["CLERK_PUBLISHABLE_KEY"] = secrets.clerk_publishable_key
        if secrets.clerk_secret_key is not None:
            clerk["CLERK_SECRET_KEY"] = secrets.clerk_secret_key
        if not clerk:
            pulumi.log.warn("no Clerk keys configured (artifact-slice:clerkSecretKey, clerkPublishableKey): "
                            "the router will not authenticate users", self)
        self.router = Router("router", app_name=env["DC_ROUTER"], org_slug=org_slug, region=region,
                             image=images["router"], env=env, secrets=clerk or None, public_hostname=config.domain,
                             depends_on=[self.nfs.gate], opts=child)
        self.exec = ExecService("exec", app_name=env["DC_EXEC"], org_slug=org_slug, region=region,
                                image=images["exec"], env=env, depends_on=[self.nfs.gate, self.router.machine],
                                opts=child)
        self.worker_pool = WorkerPool("worker-pool", prefix=prefix, org_slug=org_slug, region=region,
                                      image=images["worker"], env=env,
                                      sweep_before=[self.router.machine, self.exec.machine], opts=child)

        # Phase 4
        self.host_images = [
            HostImage(f"image-{n}", image_name=n, prefix=prefix, org_slug=org_slug, region=region, image=images[n],
                      env=env, nfs=self.nfs, opts=child)
            for n in HOST_IMAGES
        ]

        # The control plane's token: org-scoped.
        apps = [self.nfs.app, self.worker_pool.app, self.router.app, self.exec.app,
                *[h.app for h in self.host_images]]
        self.token = OrgToken("control-plane-token", org_id=self.org.org_id, name=f"{prefix}-control-plane",
                              expiry=f"{config.token_expiry_hours}h",
                              opts=pulumi.ResourceOptions(parent=self, depends_on=apps))
        token_later.resolve(self.token)

        # Phase 7: the handover manifest.
        self.manifest = self._manifest(config, images, endpoint)

        # Phase 6: the control plane's own checks (controlplane.validate), in-process, with the slice's token.
        self.validation: SliceValidation | None = None
        if config.validate_in_up:
            self.validation = SliceValidation(
                # Sorted keys: the manifest's key order follows resolution order, which must not read as a change.
                "validate", manifest=self.manifest.apply(lambda m: json.dumps(m, sort_keys=True)),
                token=self.token.token,
                opts=pulumi.ResourceOptions(parent=self, depends_on=[
                    self.exec.machine, self.router.machine, *[h.manifest_file for h in self.host_images]]))
        self.register_outputs({"manifest": self.manifest})

    def _manifest(self, config: SliceConfig, images: dict[str, str], endpoint: FlyEndpoint) -> pulumi.Output[dict]:
        def app_entry(app: Any, image: str, machines: list[Any], extra: dict[str, Any] | None = None,
                      digest: pulumi.Input[str] | None = None, flycast: Any = None) -> pulumi.Output[dict]:
            return pulumi.Output.all(
                app.name, app.app_id, digest if digest is not None else "", pulumi.Output.all(*[_machine_entry(m) for m in machines]),
                flycast.address if flycast is not None else "", pulumi.Output.from_input(extra or {}),
            ).apply(lambda v: {"name": v[0], "id": v[1], "region": config.primary_region, "image": image,
                               "image_digest": v[2], "machines": list(v[3]), "flycast": v[4], **v[5]})

        nfs = self.nfs
        volumes = pulumi.Output.all(nfs.volume.volume_id, nfs.volume.zone, nfs.volume.size_gb).apply(
            lambda v: {"volumes": [{"id": v[0], "name": NFS_VOLUME_NAME, "zone": v[1], "size_gb": v[2]}]})
        router_public = pulumi.Output.all(*[ip.address for ip in self.router.public_ips]).apply(
            lambda ips: {"public_ips": list(ips), "hostname": config.domain})
        apps: dict[str, pulumi.Output[dict]] = {
            "nfs": app_entry(nfs.app, images["nfs"], [nfs.machine], volumes, nfs.machine.image_digest, nfs.flycast),
            "router": app_entry(self.router.app, images["router"], [self.router.machine], router_public,
                                self.router.machine.image_digest, self.router.flycast),
            "exec": app_entry(self.exec.app, images["exec"], [self.exec.machine], None,
                              self.exec.machine.image_digest, self.exec.flycast),
            "worker_pool": app_entry(self.worker_pool.app, images["worker"], [],
                                     {"machine_template": self.worker_pool.template}, None, self.worker_pool.flycast),
        }
        for host in self.host_images:
            apps[f"image_{host.image_name}"] = app_entry(
                host.app, host.image, [], {"image_manifest": host.manifest}, host.manifest.apply(
                    lambda m: (m or {}).get("digest", "")), host.flycast)
        token = pulumi.Output.all(self.token.token_id, self.token.name, self.token.expires_at).apply(
            lambda v: {"id": v[0], "name": v[1], "expires_at": v[2], "profile": "deploy_organization"})
        org = pulumi.Output.all(self.org.slug, self.org.org_id, self.org.org_name).apply(
            lambda v: {"slug": v[0], "id": v[1], "name": v[2]})
        return pulumi.Output.all(org, token, pulumi.Output.all(**apps)).apply(lambda v: {
            "slice": config.prefix, "org": v[0], "token": v[1], "apps": v[2],
            "fly": {"api_base_url": endpoint.api_base_url or "", "flaps_base_url": endpoint.flaps_base_url or ""},
        })
