"""The slice's handover manifest (its stack outputs), as the control plane reads it.

From a JSON file, from an environment variable holding the JSON, or from a stack's outputs through the
Automation API with the user's own Pulumi environment (``PULUMI_BACKEND_URL``, passphrase, login).
Secret outputs (the token) are dropped on the way in: the manifest tool returns what is kept.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from .errors import ControlPlaneError

REPO = Path(__file__).resolve().parent.parent
MANIFEST_ENV = "SLICE_MANIFEST"
SECRET_OUTPUTS = frozenset({"controlPlaneToken"})
# The roles whose one machine must be running for the slice to serve (phase 6).
SERVING_ROLES = ("nfs", "router", "exec")


class ManifestApp(BaseModel):
    model_config = ConfigDict(extra="allow")

    name: str
    id: str | None = None
    region: str | None = None
    image: str | None = None
    flycast: str | None = None
    machine_template: dict[str, Any] | None = None


class Endpoint(BaseModel):
    api_base_url: str = ""
    flaps_base_url: str = ""


class Slice(BaseModel):
    """The parts of the manifest the control plane acts on; ``document`` is the whole public manifest."""

    prefix: str
    org: str
    apps: dict[str, ManifestApp]
    fly: Endpoint = Endpoint()
    document: dict[str, Any]

    @classmethod
    def from_outputs(cls, outputs: dict[str, Any], *, source: str) -> Slice:
        public = {k: v for k, v in outputs.items() if k not in SECRET_OUTPUTS}
        org = public.get("org")
        try:
            return cls(prefix=public.get("slice") or public.get("prefix") or "",
                       org=org.get("slug", "") if isinstance(org, dict) else (org or ""),
                       apps=public.get("apps") or {}, fly=public.get("fly") or {}, document=public)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            raise ControlPlaneError(f"the slice manifest from {source} is malformed ({problems})",
                                    "pass the stack outputs of an `up` of this project") from None

    def check(self, source: str) -> Slice:
        missing = [k for k, v in (("slice", self.prefix), ("org.slug", self.org), ("apps", self.apps)) if not v]
        if missing:
            raise ControlPlaneError(f"the slice manifest from {source} has no {', '.join(missing)}",
                                    "pass the stack outputs of an `up` of this project")
        return self

    @property
    def region(self) -> str:
        for role in ("worker_pool", "nfs", *self.apps):
            if role in self.apps and self.apps[role].region:
                return str(self.apps[role].region)
        return "iad"

    @property
    def agent_image(self) -> str:
        pool = self.apps.get("worker_pool")
        if pool is None:
            return ""
        return (pool.machine_template or {}).get("image") or pool.image or ""

    @property
    def images(self) -> list[str]:
        """Every image the slice itself runs (its apps' and the worker pool template's)."""
        found = [app.image for app in self.apps.values() if app.image]
        found += [str(app.machine_template["image"]) for app in self.apps.values()
                  if app.machine_template and app.machine_template.get("image")]
        return sorted(set(found))

    @property
    def agent_template(self) -> dict[str, Any]:
        pool = self.apps.get("worker_pool")
        return dict(pool.machine_template or {}) if pool else {}

    def customer_app(self, customer: str) -> str:
        """Customer apps are named like the slice's own: ``<prefix>-cust-<customer>``."""
        return f"{self.prefix}-cust-{customer}"


def load_slice(*, manifest_file: Path | None = None, manifest_env: str | None = None, stack: str | None = None,
               work_dir: Path | None = None) -> Slice:
    if manifest_file is not None:
        source = str(manifest_file)
        try:
            outputs = json.loads(manifest_file.read_text())
        except OSError as exc:
            raise ControlPlaneError(f"cannot read the manifest file {source}: {exc.strerror}",
                                    "pass the path of a JSON file of the stack outputs") from None
        except ValueError as exc:
            raise ControlPlaneError(f"the manifest file {source} is not JSON ({exc})",
                                    "write it with `pulumi stack output --json > FILE`") from None
    elif stack is not None:
        source = f"stack {stack}"
        outputs = stack_outputs(stack, work_dir)
    else:
        var = manifest_env or MANIFEST_ENV
        source = f"${var}"
        text = os.environ.get(var)
        if not text:
            raise ControlPlaneError(f"no slice manifest: ${var} is not set",
                                    f"pass --manifest FILE or --stack NAME, or set ${var} to the stack outputs (JSON)")
        try:
            outputs = json.loads(text)
        except ValueError as exc:
            raise ControlPlaneError(f"${var} is not JSON ({exc})", "set it to `pulumi stack output --json`") from None
    if not isinstance(outputs, dict):
        raise ControlPlaneError(f"the slice manifest from {source} is not a JSON object",
                                "pass the stack outputs of an `up` of this project")
    return Slice.from_outputs(outputs, source=source).check(source)


def stack_outputs(stack: str, work_dir: Path | None = None) -> dict[str, Any]:
    """Public outputs of a stack, read with the user's Pulumi environment. Pulumi is imported here only:
    the rest of the control plane runs without it."""
    from pulumi import automation as auto

    try:
        selected = auto.select_stack(stack_name=stack, work_dir=str(work_dir or REPO))
        outputs = selected.outputs()
    except auto.errors.CommandError as exc:
        last = str(exc).strip().splitlines()[-1:] or [""]
        raise ControlPlaneError(f"cannot read the outputs of stack {stack}: {last[0][:300]}",
                                "log in to the stack's backend (PULUMI_BACKEND_URL, `pulumi login`) and check "
                                "the stack name (`pulumi stack ls`)") from None
    return {key: value.value for key, value in outputs.items() if not value.secret}


def stack_token(stack: str, work_dir: Path | None = None) -> str | None:
    """The stack's control plane token (secret output ``controlPlaneToken``): to use, never to show."""
    from pulumi import automation as auto

    try:
        output = auto.select_stack(stack_name=stack, work_dir=str(work_dir or REPO)).outputs().get("controlPlaneToken")
    except auto.errors.CommandError:
        return None
    return str(output.value) if output is not None and output.value else None
