"""Phase 6 as the last step of ``pulumi up``, in the provider process: ``SliceValidation`` runs
``controlplane.validate.validate_slice`` with the slice's own org token, and fails the update (naming
each failed check) when the slice is not right.

In-process, not a ``python -m ...`` subprocess: the provider process has already imported the Fly
client, so the step costs no interpreter start and no second import of httpx, pydantic or Pulumi.
It runs again whenever the manifest changes; a no-change ``up`` makes no call.
"""

from __future__ import annotations

import json
from typing import Any

import pulumi
from pulumi.dynamic import CreateResult, DiffResult, ResourceProvider, UpdateResult


class SliceValidationFailed(Exception):
    pass


class SliceValidationProvider(ResourceProvider):
    def _run(self, props: dict[str, Any]) -> dict[str, Any]:
        from .errors import ControlPlaneError
        from .infra import Infra, connection_for
        from .manifest import Slice
        from .validate import validate_slice

        try:
            slice_ = Slice.from_outputs(json.loads(props["manifest"]), source="the stack's manifest").check(
                "the stack's manifest")
            with Infra(slice_, connection_for(slice_, props["token"])) as infra:
                report = validate_slice(infra)
        except ControlPlaneError as exc:
            raise SliceValidationFailed(f"phase 6 validation could not run: {exc}") from None
        if not report.ok:
            raise SliceValidationFailed("phase 6 validation failed:\n" + report.render())
        # The token is an input only: it is never an output, so never in the state's outputs.
        return {"manifest": props["manifest"], "report": report.render()}

    def create(self, props: dict[str, Any]) -> CreateResult:
        return CreateResult("phase6", self._run(props))

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        changed = olds.get("manifest") != news.get("manifest")
        return DiffResult(changes=changed, replaces=[], stables=[] if changed else ["manifest"])

    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        return UpdateResult(self._run(news))

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        return None


class SliceValidation(pulumi.dynamic.Resource):
    report: pulumi.Output[str]

    def __init__(self, resource_name: str, *, manifest: pulumi.Input[str], token: pulumi.Input[str],
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(SliceValidationProvider(), resource_name,
                         {"manifest": manifest, "token": pulumi.Output.secret(token), "report": None}, opts)
