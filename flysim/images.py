"""The image catalogue: what the images flysim "runs" do.

flysim has no containers, so an image is only a name unless the catalogue says
what it contains. An entry is keyed by image repository (the reference without
`:tag`/`@digest`) or by an exact reference (`repo:tag`), which overrides the
repository entry field by field (its `exec` scripts path by path). An entry can
give:

  digest   the image digest reported in `image_ref` (else derived from the
           reference, so every tag gets its own stable digest)
  labels   `image_ref.labels`
  exec     scripts the image has, by absolute path: what exec of that path
           prints and exits with, optionally only when a volume is mounted
  release  what the image's release command does on a release machine
           (flyctl's `fly_app_release_command` process group): files it writes
           into another app's volume, its output and exit code
  health   what the machine checks (`config.checks`) of a started machine of
           the image report (default: passing)
  boot     what the image prints when its machine boots (to the app's logs):
           `stdout`/`stderr` lines, and/or `run`, one of its `exec` scripts
           whose output is logged (the NFS image's self-mount check)

The built-in catalogue is `catalogue.json` next to this file. A custom one (CLI
`--images`, `FlysimServer(images=...)`) is layered over it entry by entry,
unless it says `"extends_default": false`. The format is in docs/flysim.md.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .state import App, Machine, Volume, rfc3339

DEFAULT_CATALOGUE = Path(__file__).with_name("catalogue.json")
DIGEST_PATTERN = r"^sha256:[a-f0-9]{64}$"
# How flyctl (fly-go) marks release command machines: config.metadata.
RELEASE_GROUP = "fly_app_release_command"


class _Strict(BaseModel):
    # A typo in a catalogue must fail loudly, not silently do nothing.
    model_config = ConfigDict(extra="forbid", frozen=True)


class ExecScript(_Strict):
    exit_code: int = Field(default=0, ge=0, le=255)
    stdout: str = ""
    stderr: str = ""
    requires_mount: str | None = Field(default=None, pattern=r"^/")


class ReleaseWrite(_Strict):
    app_from_env: str = Field(min_length=1)
    path: str = Field(min_length=1)
    content: Any

    @field_validator("path")
    @classmethod
    def _relative(cls, v: str) -> str:
        norm = posixpath.normpath(v)
        if v.startswith("/") or norm == "." or norm.startswith(".."):
            raise ValueError("path must be relative to the volume root and stay inside it")
        return norm


class ReleaseSpec(_Strict):
    exit_code: int = Field(default=0, ge=0, le=255)
    stdout: str = ""
    stderr: str = ""
    writes: tuple[ReleaseWrite, ...] = ()


class HealthSpec(_Strict):
    """What the image's http and tcp checks report while a machine of it is started."""

    status: Literal["passing", "warning", "critical"] = "passing"
    output: str = ""


class BootSpec(_Strict):
    """What a machine of the image logs each time it boots (not on resume: a resumed process goes on)."""

    run: str | None = Field(default=None, pattern=r"^/")
    stdout: str = ""
    stderr: str = ""


class ImageEntry(_Strict):
    comment: str = ""
    digest: str | None = Field(default=None, pattern=DIGEST_PATTERN)
    labels: dict[str, str] = Field(default_factory=dict)
    exec: dict[str, ExecScript] = Field(default_factory=dict)
    release: ReleaseSpec | None = None
    health: HealthSpec | None = None
    boot: BootSpec | None = None

    @field_validator("exec")
    @classmethod
    def _absolute(cls, v: dict[str, ExecScript]) -> dict[str, ExecScript]:
        bad = [p for p in v if not p.startswith("/")]
        if bad:
            raise ValueError(f"exec script paths must be absolute: {bad}")
        return v

    def over(self, base: ImageEntry) -> ImageEntry:
        """This (exact-reference) entry layered over a repository entry."""
        return ImageEntry(
            comment=self.comment or base.comment,
            digest=self.digest or base.digest,
            labels={**base.labels, **self.labels},
            exec={**base.exec, **self.exec},
            release=self.release if self.release is not None else base.release,
            health=self.health if self.health is not None else base.health,
            boot=self.boot if self.boot is not None else base.boot,
        )


class CatalogueFile(_Strict):
    comment: str = ""
    extends_default: bool = True
    images: dict[str, ImageEntry] = Field(default_factory=dict)


# -- references ----------------------------------------------------------------------
def split_reference(ref: str) -> tuple[str, str, str]:
    """`repo[:tag][@digest]` -> (repo, tag, digest); a port colon is not a tag."""
    rest, _, digest = ref.partition("@")
    last = rest.rsplit("/", 1)[-1]
    if ":" in last:
        repo, _, tag = rest.rpartition(":")
        return repo, tag, digest
    return rest, "", digest


def derived_digest(ref: str) -> str:
    return "sha256:" + hashlib.sha256(ref.encode()).hexdigest()


def image_ref(ref: str, entry: ImageEntry | None = None) -> dict[str, Any]:
    """The API's `ImageRef` for a reference, like flyd reports it (digest always set)."""
    repo, tag, digest = split_reference(ref)
    first, sep, remainder = repo.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        registry, repository = first, remainder
    else:  # Docker Hub, which Fly pulls through its mirror
        registry, repository = "docker-hub-mirror.fly.io", repo if "/" in repo else "library/" + repo
    digest = digest or (entry.digest if entry else None) or derived_digest(ref)
    return {
        "registry": registry,
        "repository": repository,
        "tag": tag or "latest",
        "digest": digest,
        "labels": dict(entry.labels) if entry else {},
    }


# -- the catalogue ---------------------------------------------------------------------
class Catalogue:
    def __init__(self, entries: Mapping[str, ImageEntry] | None = None) -> None:
        self.entries: dict[str, ImageEntry] = dict(entries or {})

    @classmethod
    def load(cls, source: str | os.PathLike[str] | Mapping[str, Any] | None = None) -> Catalogue:
        """The default catalogue, with `source` (a file path or a parsed document) over it."""
        default = _parse(json.loads(DEFAULT_CATALOGUE.read_text()), str(DEFAULT_CATALOGUE))
        if source is None:
            return cls(default.images)
        if isinstance(source, Mapping):
            doc, where = dict(source), "images"
        else:
            path = Path(source)
            try:
                doc = json.loads(path.read_text())
            except (OSError, ValueError) as exc:
                raise ValueError(f"cannot read image catalogue {path}: {exc}") from None
            where = str(path)
        custom = _parse(doc, where)
        base = dict(default.images) if custom.extends_default else {}
        return cls({**base, **custom.images})

    def resolve(self, ref: str) -> ImageEntry:
        """The entry for a reference: its repository entry with any exact-reference entry over it."""
        repo, _, _ = split_reference(ref)
        base = self.entries.get(repo) or ImageEntry()
        exact = self.entries.get(ref) if ref != repo else None
        return exact.over(base) if exact is not None else base

    def image_ref(self, ref: str) -> dict[str, Any]:
        return image_ref(ref, self.resolve(ref))


def _parse(doc: Any, where: str) -> CatalogueFile:
    try:
        parsed = CatalogueFile.model_validate(doc)
    except ValidationError as exc:
        raise ValueError(f"invalid image catalogue {where}: {exc}") from None
    for key in parsed.images:
        if not key or key != key.strip():
            raise ValueError(f"invalid image catalogue {where}: bad image key {key!r}")
    return parsed


# -- release machines ------------------------------------------------------------------
def is_release_machine(m: Machine) -> bool:
    """fly-go's Machine.IsReleaseCommandMachine: process group, or the older metadata key."""
    md = m.config.get("metadata") or {}
    return md.get("fly_process_group") == RELEASE_GROUP or md.get("process_group") == "release_command"


def run_release(entry: ImageEntry, app: App, m: Machine, apps: Mapping[str, App]) -> dict[str, Any]:
    """Run the image's release behaviour for release machine `m` of `app`.

    Returns {"exit_code", "stdout", "stderr"}. Writes go straight into the
    target app's first volume, as the real command would through NFS. A write
    that cannot land fails the release with exit code 1 (and stops there),
    like a script under `set -e`. An image without a `release` entry exits 0.
    """
    spec = entry.release or ReleaseSpec()
    image = str(m.config.get("image") or "")
    cmd = (m.config.get("init") or {}).get("cmd") or []
    values = {
        "{image}": image,
        "{digest}": m.image_ref.get("digest", "") if m.image_ref else image_ref(image, entry)["digest"],
        "{name}": str(cmd[-1]) if cmd else "",
        "{now}": rfc3339(),
    }
    env = m.config.get("env") or {}
    out: list[str] = []
    for w in spec.writes:
        target_name = env.get(w.app_from_env)
        if not target_name:
            return _failed(out, f"release: ${w.app_from_env} is not set; cannot write {w.path}")
        target = apps.get(target_name)
        if target is None or target.org_slug != app.org_slug:
            return _failed(out, f"release: app {target_name} (from ${w.app_from_env}) not found in org {app.org_slug}")
        vol = _first_volume(target)
        if vol is None:
            return _failed(out, f"release: app {target_name} has no volume to write {w.path} into")
        vol.files["/" + w.path] = _render(w.content, values)
        out.append(f"wrote {w.path} to volume {vol.name} of app {target_name}\n")
    return {"exit_code": spec.exit_code, "stdout": "".join(out) + spec.stdout, "stderr": spec.stderr}


def _first_volume(app: App) -> Volume | None:
    vols = sorted(app.volumes.values(), key=lambda v: v.created_at)
    return vols[0] if vols else None


def _failed(out: list[str], message: str) -> dict[str, Any]:
    return {"exit_code": 1, "stdout": "".join(out), "stderr": message + "\n"}


def _fill(text: str, values: Mapping[str, str]) -> str:
    # Plain replacement, not str.format: content is often JSON, full of braces.
    for key, value in values.items():
        text = text.replace(key, value)
    return text


def _render(content: Any, values: Mapping[str, str]) -> str:
    """A string is written as is; any other JSON value is written as JSON."""
    if isinstance(content, str):
        return _fill(content, values)

    def walk(x: Any) -> Any:
        if isinstance(x, str):
            return _fill(x, values)
        if isinstance(x, list):
            return [walk(v) for v in x]
        if isinstance(x, dict):
            return {k: walk(v) for k, v in x.items()}
        return x

    return json.dumps(walk(content), indent=2) + "\n"
