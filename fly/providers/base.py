"""The one base class of the Fly dynamic providers: check, diff and read live here, once.

Traps of Python dynamic providers this design avoids:
- the provider object is pickled with dill into the state (``__provider``): providers hold no client,
  no token and no state; they build a client per call from the resource's own properties;
- provider classes live in this importable package (never ``__main__``), so dill pickles them by
  reference and the provider process imports them from the project;
- the token travels as a Pulumi secret input (``fly_token``) or comes from the provider process's
  environment (``FLY_API_TOKEN``), never as plain state.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, ClassVar, Iterator

from pulumi.dynamic import CheckFailure, CheckResult, DiffResult, ReadResult, ResourceProvider
from pydantic import BaseModel, ConfigDict, ValidationError

from ..client import FlyClient
from ..connection import FlyConnection

# The value a not-yet-known input has during preview (pulumi.runtime.rpc.UNKNOWN).
UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"
CONNECTION_KEYS = frozenset({"fly_api", "fly_token"})
INTERNAL_KEYS = frozenset({"__provider"}) | CONNECTION_KEYS


class ProviderInputs(BaseModel):
    """Base of every provider's input model: validated in ``check``, before any API call."""

    model_config = ConfigDict(extra="forbid")


def contains_unknown(value: Any) -> bool:
    if isinstance(value, str):
        return value == UNKNOWN
    if isinstance(value, dict):
        return any(contains_unknown(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(contains_unknown(v) for v in value)
    return False


class FlyProvider(ResourceProvider):
    """Subclasses set ``inputs_model`` and ``replace_on`` and implement create/update/delete/_read_live."""

    inputs_model: ClassVar[type[ProviderInputs]]
    # Input keys whose change Fly cannot apply in place.
    replace_on: ClassVar[frozenset[str]] = frozenset()
    delete_before_replace: ClassVar[bool] = False
    kind: ClassVar[str] = "resource"

    # -- helpers ---------------------------------------------------------------------------------

    @staticmethod
    @contextmanager
    def client(props: dict[str, Any]) -> Iterator[FlyClient]:
        api = props.get("fly_api") or {}
        connection = FlyConnection.resolve(
            token=props.get("fly_token") or None,
            api_base_url=api.get("api_base_url") or None,
            flaps_base_url=api.get("flaps_base_url") or None,
        )
        with FlyClient(connection) as client:
            yield client

    @staticmethod
    def desired(props: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in props.items() if k not in INTERNAL_KEYS}

    # -- check / diff / read ----------------------------------------------------------------------

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        failures: list[CheckFailure] = []
        desired = self.desired(news)
        if contains_unknown(desired):
            # Values computed by other resources are not known during preview; check them at update.
            return CheckResult(news, [])
        try:
            self.inputs_model.model_validate(desired)
        except ValidationError as exc:
            for error in exc.errors():
                where = ".".join(str(p) for p in error["loc"]) or "(inputs)"
                failures.append(CheckFailure(where, f"{self.kind} input {where}: {error['msg']}"))
        failures.extend(self.extra_checks(_olds, news))
        return CheckResult(news, failures)

    def extra_checks(self, _olds: dict[str, Any], _news: dict[str, Any]) -> list[CheckFailure]:
        return []

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        old_desired, new_desired = self.desired(olds), self.desired(news)
        fields = self.inputs_model.model_fields
        changed = [k for k in fields if _normal(old_desired.get(k)) != _normal(new_desired.get(k))]
        replaces = [k for k in changed if k in self.replace_on or self.needs_replace(k, olds, news)]
        return DiffResult(
            changes=bool(changed),
            replaces=replaces,
            stables=[k for k in fields if k not in changed],
            delete_before_replace=self.delete_before_replace if replaces else None,
        )

    def needs_replace(self, _key: str, _olds: dict[str, Any], _news: dict[str, Any]) -> bool:
        return False

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        with self.client(props) as client:
            live = self.read_live(client, id_, props)
        if live is None:  # gone: an empty id tells the engine to drop it from the state
            return ReadResult("", {})
        return ReadResult(id_, {**props, **live})

    def read_live(self, client: FlyClient, id_: str, props: dict[str, Any]) -> dict[str, Any] | None:
        raise NotImplementedError


def _normal(value: Any) -> Any:
    """Pulumi hands back ints as floats; compare numbers by value."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _normal(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_normal(v) for v in value]
    return value
