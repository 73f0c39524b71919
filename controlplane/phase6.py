"""Phase 6 as the last step of ``pulumi up``, in the provider process: ``SliceValidation`` runs
``controlplane.validate.validate_slice`` with the slice's own org token, and fails the update (naming
each failed check) when the slice is not right.

In-process, not a ``python -m ...`` subprocess: the provider process has already imported the Fly
client, so the step costs no interpreter start and no second import of httpx, pydantic or Pulumi.
It runs again whenever the manifest changes, and when what it checks has drifted: a refresh
(``up --refresh``, ``pulumi refresh``) runs the checks again (reads only) and records whether they pass,
and a failing record makes the next update validate again, which fails naming the checks (say the
worker pool gained machines, or a router stopped). A no-change ``up`` makes no call.
"""

from __future__ import annotations

import json
from typing import Any

import pulumi
from pulumi.dynamic import CreateResult, DiffResult, ReadResult, ResourceProvider, UpdateResult


class SliceValidationFailed(Exception):
    pass


def _validate(props: dict[str, Any]) -> Any:
    """The phase 6 report for the slice ``props`` describes; raises ControlPlaneError when it cannot run."""
    from .infra import Infra, connection_for
    from .manifest import Slice
    from .validate import validate_slice

    slice_ = Slice.from_outputs(json.loads(props["manifest"]), source="the stack's manifest").check(
        "the stack's manifest")
    with Infra(slice_, connection_for(slice_, props["token"])) as infra:
        return validate_slice(infra)


class SliceValidationProvider(ResourceProvider):
    def _run(self, props: dict[str, Any]) -> dict[str, Any]:
        from .errors import ControlPlaneError

        try:
            report = _validate(props)
        except ControlPlaneError as exc:
            raise SliceValidationFailed(f"phase 6 validation could not run: {exc}") from None
        if not report.ok:
            raise SliceValidationFailed("phase 6 validation failed:\n" + report.render())
        # The token is kept (a secret, as its input is) so that a refresh can check again.
        return {"manifest": props["manifest"], "token": props["token"], "report": report.render(), "ok": True}

    def create(self, props: dict[str, Any]) -> CreateResult:
        return CreateResult("phase6", self._run(props))

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        """Refresh: the checks again, recording whether they still pass (never failing the refresh)."""
        from .errors import ControlPlaneError

        if not props.get("token") or not props.get("manifest"):
            return ReadResult(id_, props)  # a state from before tokens were kept: checked at the next update
        try:
            report = _validate(props)
            ok, text = report.ok, report.render()
        except ControlPlaneError as exc:
            ok, text = False, f"phase 6 validation could not run: {exc}"
        return ReadResult(id_, {**props, "report": text, "ok": ok})

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        changed = olds.get("manifest") != news.get("manifest")
        drifted = olds.get("ok") is False  # a refresh found a check failing: validate again
        # "unknown" on a change of inputs: the engine names the keys (see fly/providers/base.py).
        return DiffResult(changes=None if changed else drifted, replaces=[],
                          stables=[] if changed else ["manifest"])

    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        return UpdateResult(self._run(news))

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        return None


class SliceValidation(pulumi.dynamic.Resource, module="artifact", name="SliceValidation"):
    """Typed ``pulumi-python:dynamic/artifact:SliceValidation``; stacks made before knew it untyped."""

    report: pulumi.Output[str]

    def __init__(self, resource_name: str, *, manifest: pulumi.Input[str], token: pulumi.Input[str],
                 opts: pulumi.ResourceOptions | None = None) -> None:
        typed = pulumi.ResourceOptions(aliases=[pulumi.Alias(type_="pulumi-python:dynamic:Resource")],
                                       additional_secret_outputs=["token"])
        super().__init__(SliceValidationProvider(), resource_name,
                         {"manifest": manifest, "token": pulumi.Output.secret(token), "report": None, "ok": None},
                         pulumi.ResourceOptions.merge(opts, typed))
