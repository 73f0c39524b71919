"""``WorkerPool``: ``<prefix>-worker-pool``, an app with no machines. fly-exec creates its machines from
the template kept here (and in the manifest); teardown sweeps them, Pulumi never made them."""

from __future__ import annotations

from typing import Any, Sequence

import pulumi

from fly.appconfig import auto_stop_mode, machine_config
from fly.providers import App, FlyConnectionArgs, IpAddress, MachineSweeper, inherit_connection

from .deploy import fly_toml


class WorkerPoolTemplateError(ValueError):
    pass


class WorkerPool(pulumi.ComponentResource):
    """``sweep_before``: the machines whose teardown waits for the worker machines to be swept (the
    slice's teardown order, see ``OrgSlice``); the sweeper is created after them."""

    def __init__(self, name: str, *, prefix: str, org_slug: pulumi.Input[str], region: str, image: str,
                 env: dict[str, str], sweep_before: Sequence[pulumi.Resource] = (),
                 connection: FlyConnectionArgs | None = None, opts: pulumi.ResourceOptions | None = None) -> None:
        toml = fly_toml("worker-pool")
        # Idle workers must be suspended (fast resume), never stopped: refuse a template that lost it.
        mode = auto_stop_mode(toml)
        if mode != "suspend":
            raise WorkerPoolTemplateError(
                f"deploy/fly.worker-pool.toml: http_service.auto_stop_machines is {mode!r}; the worker pool "
                "needs 'suspend' (set auto_stop_machines = 'suspend')")
        template: dict[str, Any] = machine_config(toml, image=image, env={"PRIMARY_REGION": region, **env})
        # The template is the component's input: no Fly resource holds it, and the policy pack (policy/) checks
        # what fly-exec will launch from it (suspend, size, image, env) as it checks a machine's config.
        super().__init__("artifact:slice:WorkerPool", name, {"template": template}, opts)
        self.template = template  # the SDK made the input an Output attribute; the program uses the plain dict
        inherit_connection(self, opts, connection)
        child = pulumi.ResourceOptions(parent=self)
        self.app = App(f"{name}-app", name=f"{prefix}-worker-pool", org_slug=org_slug, opts=child)
        self.flycast = IpAddress(f"{name}-flycast", app=self.app.name, type="private_v6", org_slug=org_slug,
                                 opts=child)
        # Destroys every machine of the pool (fly-exec's included) when it is deleted.
        self.sweeper = MachineSweeper(f"{name}-sweeper", app=self.app.name,
                                      opts=pulumi.ResourceOptions(parent=self, depends_on=list(sweep_before)))
        self.register_outputs({"app": self.app.name})
