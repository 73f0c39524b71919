"""A scenario is data: one JSON file under ``ops/e2e/scenarios/`` (or ``--scenarios-dir``), checked here
before anything runs, so adding one needs no code.

    {"id": "FAULT-050", "title": "...", "smoke": false,
     "variants": {"happy": {"steps": [...], "restore": [...], "expect": [...]},
                  "unhappy": {"fault": "what is broken", "steps": [...], "restore": [...], "expect": [...]}}}

A step is ``{"name": ..., "do": <kind>, ...}``; ``restore`` steps run after the steps whatever happened
(faults reverted). An expectation is ``{"check": <kind>, ...}``; those of kind ``service`` are about
Artifact's own services (HTTP probes, exec's reconciliation, agent routing): they run against a real
slice and are reported "not observable here" on flysim, never passed. Every string may use
``{apps.<role>}`` (an app's name), ``{stack}``, ``{prefix}``, ``{org}``, ``{domain}``, ``{run_id}``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

SCENARIOS_DIR = Path(__file__).with_name("scenarios")
VARIANTS = ("happy", "unhappy")


class ScenarioError(Exception):
    """A scenario file that cannot be run: the message names the file, the field and the fix."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Step(_Strict):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    # Switched off (the file stays valid): the step does not run, and every expectation on it fails.
    skip: bool = False


class McpStep(_Step):
    """A control plane tool through its MCP server; ``server: minted`` uses a server started with the
    token of the last ``token`` mint step."""
    do: Literal["mcp"]
    tool: str
    args: dict[str, Any] = Field(default_factory=dict)
    server: Literal["slice", "minted"] = "slice"


class MachineStep(_Step):
    """A machine fault through the Fly API, waited for on the wait endpoint: every machine of the app
    (of the worker pool: those this run made)."""
    do: Literal["machine"]
    action: Literal["stop", "start", "restart", "suspend"]
    app: str


class WorkerStep(_Step):
    """A worker machine in the worker pool, from the manifest's machine template, labelled with this run
    (``create``); or the run's workers destroyed (``destroy``). ``stop_at_once``: stopped while it boots."""
    do: Literal["worker"]
    action: Literal["create", "destroy"]
    stop_at_once: bool = False


class SecretsStep(_Step):
    """Read an app's secret names and digests; ``unset`` names; ``set_from_env``: name -> the variable
    holding its value (the value is never written anywhere)."""
    do: Literal["secrets"]
    app: str
    unset: list[str] = Field(default_factory=list)
    set_from_env: dict[str, str] = Field(default_factory=dict)


class NfsStep(_Step):
    """A file on the slice's NFS volume (path relative to its root), through exec on the NFS machine:
    ``read``; ``write`` (``content``, or ``content_from`` a step that read it); ``remove``."""
    do: Literal["nfs"]
    action: Literal["read", "write", "remove"]
    path: str = Field(pattern=r"^[A-Za-z0-9._/{}-]+$")
    content: str | None = None
    content_from: str | None = None

    @model_validator(mode="after")
    def _inside(self) -> NfsStep:
        if self.path.startswith("/") or ".." in self.path.split("/"):
            raise ValueError("path must be relative to the volume root and stay inside it")
        if self.action == "write" and (self.content is None) == (self.content_from is None):
            raise ValueError("a write needs content or content_from (one of them)")
        return self


class TokenStep(_Step):
    """An extra org token of the slice's org, minted or revoked with the deployer's token."""
    do: Literal["token"]
    action: Literal["mint", "revoke"]


class ValidateStep(_Step):
    """Phase 6, the control plane's checks (``controlplane.validate``), with the slice's org token."""
    do: Literal["validate"]


class LogsStep(_Step):
    """An app's recent log lines, read as ``fly logs --no-tail`` reads them; ``since``: only lines
    logged after that step started."""
    do: Literal["logs"]
    app: str
    since: str | None = None


Step = Annotated[Union[McpStep, MachineStep, WorkerStep, SecretsStep, NfsStep, TokenStep, ValidateStep, LogsStep],
                 Field(discriminator="do")]


class _Expect(_Strict):
    why: str = ""


class MachinesExpect(_Expect):
    """After ``step`` (default: the last step), every machine of ``app`` is in ``state`` (and there is one)."""
    check: Literal["machines"]
    app: str
    state: str
    step: str | None = None


class McpExpect(_Expect):
    """A tool call's outcome: ``ok`` (answered without a tool error or not), and text its answer holds."""
    check: Literal["mcp"]
    step: str
    ok: bool
    contains: list[str] = Field(default_factory=list)


class ValidationExpect(_Expect):
    check: Literal["validation"]
    step: str
    ok: bool
    failed_contains: list[str] = Field(default_factory=list)


class SecretExpect(_Expect):
    """After a ``secrets`` step: ``present`` or not; ``same_as``: the same digest as at another secrets step."""
    check: Literal["secret"]
    step: str
    name: str
    present: bool = True
    same_as: str | None = None


class LogExpect(_Expect):
    check: Literal["log"]
    step: str
    contains: str


class NfsExpect(_Expect):
    """After an nfs ``read``: the file exists or not; ``json_fields`` it must have; ``same_as`` another read."""
    check: Literal["nfs"]
    step: str
    exists: bool = True
    json_fields: list[str] = Field(default_factory=list)
    same_as: str | None = None


class ServiceExpect(_Expect):
    """Artifact's own services. ``probe``: ``http`` (GET ``url``; ``status`` one of; ``location_contains``),
    or ``manual`` (what to look at: reported, never passed by the runner)."""
    check: Literal["service"]
    what: str
    probe: Literal["http", "manual"] = "manual"
    url: str | None = None
    status: list[int] = Field(default_factory=list)
    location_contains: str | None = None

    @model_validator(mode="after")
    def _http_needs(self) -> ServiceExpect:
        if self.probe == "http" and (not self.url or not self.status):
            raise ValueError("an http probe needs url and status")
        return self


Expect = Annotated[Union[MachinesExpect, McpExpect, ValidationExpect, SecretExpect, LogExpect, NfsExpect,
                         ServiceExpect], Field(discriminator="check")]


class Variant(_Strict):
    fault: str = ""
    steps: list[Step]
    restore: list[Step] = Field(default_factory=list)
    expect: list[Expect] = Field(min_length=1)

    @model_validator(mode="after")
    def _references(self) -> Variant:
        names = [s.name for s in [*self.steps, *self.restore]]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"step names must be unique: {', '.join(twice)}")
        known = set(names)
        for s in [*self.steps, *self.restore]:
            for ref in (getattr(s, "since", None), getattr(s, "content_from", None)):
                if ref is not None and ref not in known:
                    raise ValueError(f"step {s.name} refers to unknown step {ref!r}")
        for e in self.expect:
            for ref in (getattr(e, "step", None), getattr(e, "same_as", None)):
                if ref is not None and ref not in known:
                    raise ValueError(f"an expectation ({e.check}) refers to unknown step {ref!r}")
        return self


class Scenario(_Strict):
    id: str = Field(pattern=r"^[A-Z]+-[0-9]{3}$")
    title: str
    guide: str = ""
    smoke: bool = False
    variants: dict[Literal["happy", "unhappy"], Variant]

    @model_validator(mode="after")
    def _both(self) -> Scenario:
        missing = [v for v in VARIANTS if v not in self.variants]
        if missing:
            raise ValueError(f"needs a {' and an '.join(missing)} variant")
        return self


def load(path: Path) -> Scenario:
    try:
        document = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ScenarioError(f"{path}: cannot read it as JSON ({exc}); fix the file") from None
    try:
        scenario = Scenario.model_validate(document)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'file'}: {e['msg']}" for e in exc.errors())
        raise ScenarioError(f"{path}: {problems}. The format is in ops/e2e/scenario.py and "
                            "docs/e2e-scenarios.md") from None
    if path.stem != scenario.id:
        raise ScenarioError(f"{path}: the file of scenario {scenario.id} must be named {scenario.id}.json")
    return scenario


def load_all(directory: Path = SCENARIOS_DIR) -> dict[str, Scenario]:
    if not directory.is_dir():
        raise ScenarioError(f"{directory}: no such scenarios directory")
    scenarios = [load(p) for p in sorted(directory.glob("*.json"))]
    if not scenarios:
        raise ScenarioError(f"{directory}: holds no scenario (*.json)")
    return {s.id: s for s in scenarios}
