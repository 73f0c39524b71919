"""The generic Fly resource: one definition per resource kind, everything else derived here, once.

A resource kind states, in its own module:
- ``Inputs`` (pydantic): what the program sets, validated in ``check`` before any API call;
- ``Outputs`` (pydantic): what Fly answers, kept in the state;
- ``replace_on``: the inputs Fly cannot change in place;
- ``adoption``: the one rule by which a create that already happened (a lost answer, a crash before
  Pulumi wrote its state) is found instead of duplicated, enforced in its ``create``;
- typed ``create`` / ``update`` / ``delete`` / ``read``.

From that, this module derives the props a ``pulumi.dynamic.Resource`` registers, its output properties,
its type name (``pulumi-python:dynamic/fly:<Kind>``: the package must stay ``pulumi-python``, the engine
finds the dynamic provider plugin by it), the alias from the old untyped ``pulumi-python:dynamic:Resource``
so existing stacks update in place, validation with values still unknown during preview, and one Fly
client per provider process.

Traps of Python dynamic providers this design avoids:
- the provider object is pickled with dill into the state (``__provider``): providers hold no client,
  no token and no state; classes live in this importable package so dill pickles them by reference;
- during preview the engine hands ``check`` and ``diff`` values it does not know yet as
  ``pulumi.output.Unknown`` objects (``rpc.deserialize_properties(..., keep_unknowns=True)``); older
  SDKs used the ``rpc.UNKNOWN`` string. Both are recognised here and nowhere else;
- the token travels as a Pulumi secret input (``fly_token``) or comes from the provider process's
  environment (``FLY_API_TOKEN``), never as plain state.
"""

from __future__ import annotations

import hashlib
import logging
import sys
import threading
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

import pulumi
from pulumi.dynamic import (
    CheckFailure,
    CheckResult,
    ConfigureRequest,
    CreateResult,
    DiffResult,
    ReadResult,
    Resource,
    ResourceProvider,
    UpdateResult,
)
from pydantic import BaseModel, ConfigDict, ValidationError

from ..connection import FlyConnection
from ..errors import FlyConnectionError, FlyServerError
from .connection_args import FlyConnectionArgs, connection_in_scope
from .process_exit import skip_teardown_in_provider_process

if TYPE_CHECKING:  # the program process never needs the HTTP client (nor its import time)
    from ..client import FlyClient

# The string form of a not-yet-known value (pulumi.runtime.rpc.UNKNOWN), as SDKs before 3.1xx sent it.
UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"
CONNECTION_KEYS = frozenset({"fly_api", "fly_token"})
INTERNAL_KEYS = frozenset({"__provider"}) | CONNECTION_KEYS
# The type every resource had before each kind got its own: aliased, so old stacks update in place.
UNTYPED_DYNAMIC_TYPE = "pulumi-python:dynamic:Resource"
TYPE_MODULE = "fly"
# How often a create that failed without a clear answer (5xx, lost connection) is tried again; each kind's
# adoption rule makes the repeat safe.
CREATE_ATTEMPTS = 4

log = logging.getLogger("fly.providers")


class ProviderInputs(BaseModel):
    """Base of every resource's input model: validated in ``check``, before any API call."""

    model_config = ConfigDict(extra="forbid")


class ProviderOutputs(BaseModel):
    """Base of every resource's output model: what the state keeps of Fly's answer."""

    model_config = ConfigDict(extra="ignore")


def is_unknown(value: Any) -> bool:
    return isinstance(value, pulumi.output.Unknown) or (isinstance(value, str) and value == UNKNOWN)


def contains_unknown(value: Any) -> bool:
    if is_unknown(value):
        return True
    if isinstance(value, dict):
        return any(contains_unknown(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(contains_unknown(v) for v in value)
    return False


def normal(value: Any) -> Any:
    """Pulumi hands back ints as floats; compare numbers by value."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: normal(v) for k, v in value.items()}
    if isinstance(value, list):
        return [normal(v) for v in value]
    return value


_normal = normal  # the name other modules used


# -- one Fly client per provider process ---------------------------------------------------------------

_CLIENTS: dict[tuple[str, str, str], FlyClient] = {}
_CLIENTS_LOCK = threading.Lock()
_LOGGING_READY = False


def _show_progress_logs() -> None:
    """The provider process's stderr reaches the person running ``pulumi``: send the client's progress
    there ("waiting for Fly's app-create rate limit ...")."""
    global _LOGGING_READY
    if _LOGGING_READY:
        return
    _LOGGING_READY = True
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("fly: %(message)s"))
    fly_log = logging.getLogger("fly")
    fly_log.addHandler(handler)
    fly_log.setLevel(logging.INFO)
    fly_log.propagate = False


def shared_client(props: dict[str, Any]) -> FlyClient:
    """The process's client for this connection: one HTTP connection pool and SSL context, reused by every
    operation (the provider process lives for one ``pulumi`` run)."""
    from ..client import FlyClient  # here, not at the top: only the provider process makes calls

    api = props.get("fly_api") or {}
    connection = FlyConnection.resolve(
        token=props.get("fly_token") or None,
        api_base_url=api.get("api_base_url") or None,
        flaps_base_url=api.get("flaps_base_url") or None,
    )
    key = (connection.api_base_url, connection.flaps_base_url,
           hashlib.sha256(connection.token.get_secret_value().encode()).hexdigest())
    with _CLIENTS_LOCK:
        client = _CLIENTS.get(key)
        if client is None:
            _show_progress_logs()
            client = _CLIENTS[key] = FlyClient(connection)
        return client


# -- the provider ------------------------------------------------------------------------------------------

I = TypeVar("I", bound=ProviderInputs)
O = TypeVar("O", bound=ProviderOutputs)


class FlyProvider(ResourceProvider, Generic[I, O]):
    """Subclasses set ``Inputs``, ``Outputs``, ``replace_on``, ``adoption`` and implement the typed
    ``create_resource`` / ``update_resource`` / ``delete_resource`` / ``read_resource``."""

    Inputs: ClassVar[type[ProviderInputs]]
    Outputs: ClassVar[type[ProviderOutputs]]
    replace_on: ClassVar[frozenset[str]] = frozenset()  # inputs Fly cannot change in place
    # Inputs that steer this program (e.g. a guard) and describe nothing at Fly: never a change by themselves.
    settings_only: ClassVar[frozenset[str]] = frozenset()
    delete_before_replace: ClassVar[bool] = False
    adoption: ClassVar[str] = "none: the create is idempotent or owns nothing"
    kind: ClassVar[str] = "resource"

    def configure(self, req: ConfigureRequest) -> None:
        # The SDK calls this once per provider in the provider process, before any other operation.
        skip_teardown_in_provider_process()

    # -- what a kind implements ---------------------------------------------------------------------

    def create_resource(self, client: FlyClient, inputs: I) -> tuple[str, O]:
        raise NotImplementedError

    def update_resource(self, client: FlyClient, id_: str, olds: I | None, inputs: I, state: O) -> O:
        return state  # nothing to do at Fly unless the kind says so

    def delete_resource(self, client: FlyClient, id_: str, inputs: I, state: O) -> None:
        return None

    def read_resource(self, client: FlyClient, id_: str, inputs: I, state: O) -> O | None:
        """The live resource, or None when it is gone (refresh then drops it and ``up`` makes it again)."""
        return state

    def extra_checks(self, olds: dict[str, Any], news: dict[str, Any]) -> list[CheckFailure]:
        return []

    def needs_replace(self, key: str, olds: dict[str, Any], news: dict[str, Any]) -> bool:
        return False

    def drifted(self, olds: dict[str, Any], news: dict[str, Any]) -> bool:
        """True when what refresh read back differs from what the inputs ask for, so ``up`` repairs it."""
        return False

    # -- derived -----------------------------------------------------------------------------------------

    @classmethod
    def desired(cls, props: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in props.items() if k in cls.Inputs.model_fields}

    @classmethod
    def _inputs(cls, props: dict[str, Any]) -> Any:
        return cls.Inputs.model_validate(cls.desired(props))

    @classmethod
    def _state(cls, props: dict[str, Any]) -> Any:
        # normal(): the engine hands numbers back as floats (an exit code of 0.0), which an int field would
        # dump with a serializer warning on every refresh.
        known = {k: normal(v) for k, v in props.items() if k in cls.Outputs.model_fields and v is not None}
        return cls.Outputs.model_construct(**{**cls._output_defaults(), **known})

    @classmethod
    def _output_defaults(cls) -> dict[str, Any]:
        return {name: field.get_default(call_default_factory=True)
                for name, field in cls.Outputs.model_fields.items() if not field.is_required()}

    @staticmethod
    def _dump(model: BaseModel) -> dict[str, Any]:
        return model.model_dump(mode="json")

    def check(self, olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        """Validate what is known; a value the engine does not know yet (preview) is checked when it is."""
        desired = self.desired(news)
        unknown = {k for k, v in desired.items() if contains_unknown(v)}
        failures: list[CheckFailure] = []
        try:
            self.Inputs.model_validate(desired)
        except ValidationError as exc:
            for error in exc.errors():
                loc = [str(p) for p in error["loc"]]
                if loc and (loc[0] in unknown or (error["type"] == "missing" and loc[0] in news
                                                  and is_unknown(news[loc[0]]))):
                    continue
                if error["type"] == "model_type" and unknown:
                    continue
                where = ".".join(loc) or "(inputs)"
                failures.append(CheckFailure(where, f"{self.kind} input {where}: {error['msg']}"))
        failures.extend(self.extra_checks(olds, news))  # each check skips values it cannot know yet
        return CheckResult(news, failures)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        fields = [k for k in self.Inputs.model_fields if k not in self.settings_only]
        changed = [k for k in fields
                   if is_unknown(news.get(k)) or contains_unknown(news.get(k))
                   or normal(olds.get(k)) != normal(news.get(k))]
        replaces = [k for k in changed if k in self.replace_on or self.needs_replace(k, olds, news)]
        drift = not changed and self.drifted(olds, news)
        return DiffResult(
            # A change of inputs is answered "unknown": the SDK's dynamic provider server forwards only
            # changes, replaces and deleteBeforeReplace (not diffs, not a detailed diff), and on "unknown"
            # the engine names the changed keys itself from the old and new inputs, so `pulumi preview
            # --diff`, the PR comment and the preview's events say what changes. None, drift (no input
            # changed) and settings alone stay this provider's own answer.
            changes=None if changed else drift,
            replaces=replaces,
            stables=[k for k in fields if k not in changed],
            delete_before_replace=self.delete_before_replace if replaces else None,
        )

    def create(self, props: dict[str, Any]) -> CreateResult:
        inputs = self._inputs(props)
        client = shared_client(props)
        attempt = 0
        while True:
            attempt += 1
            try:
                id_, state = self.create_resource(client, inputs)
                break
            except (FlyServerError, FlyConnectionError) as exc:
                # The create may have happened: try again, and the kind's adoption rule finds it.
                if attempt >= CREATE_ATTEMPTS:
                    raise
                log.info("%s create failed without a clear answer (%s); trying again, adopting what it made",
                         self.kind, type(exc).__name__)
        return CreateResult(id_, {**props, **self._dump(state)})

    def update(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        inputs = self._inputs(news)
        try:
            old_inputs = self._inputs(olds)
        except ValidationError:
            old_inputs = None
        state = self.update_resource(shared_client(news), id_, old_inputs, inputs, self._state(olds))
        return UpdateResult({**news, **self._dump(state)})

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        self.delete_resource(shared_client(props), id_, self._inputs(props), self._state(props))

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        live = self.read_resource(shared_client(props), id_, self._inputs(props), self._state(props))
        if live is None:  # gone: an empty id tells the engine to drop it from the state
            return ReadResult("", {})
        return ReadResult(id_, {**props, **self._dump(live)})


# -- the resource ------------------------------------------------------------------------------------------

class FlyResource(Resource):
    """``class Machine(FlyResource): provider = MachineProvider`` is a whole resource: its keyword
    arguments are the provider's ``Inputs``, its attributes after registration the ``Inputs`` and
    ``Outputs`` (as ``pulumi.Output``), its type ``pulumi-python:dynamic/fly:Machine``.

    The Fly connection comes from ``connection=`` or, usually, from the component it is created in
    (``opts.parent``; see ``connection_args.connection_in_scope``). Inputs and outputs whose model field
    says ``json_schema_extra={"secret": True}`` are Pulumi secrets."""

    provider: ClassVar[type[FlyProvider]]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(module=TYPE_MODULE, name=cls.__name__, **kwargs)

    def __init__(self, resource_name: str, *, connection: FlyConnectionArgs | None = None,
                 opts: pulumi.ResourceOptions | None = None, **inputs: Any) -> None:
        provider = self.provider
        fields = provider.Inputs.model_fields
        unknown_args = sorted(set(inputs) - set(fields))
        if unknown_args:
            raise TypeError(f"{type(self).__name__}() got unexpected arguments {unknown_args}; "
                            f"it takes {sorted(fields)}")
        connection = connection or connection_in_scope(opts) or FlyConnectionArgs()
        props: dict[str, Any] = {}
        secrets: list[str] = []
        for name, field in fields.items():
            secret = bool((field.json_schema_extra or {}).get("secret")) if isinstance(
                field.json_schema_extra, dict) else False
            if name in inputs:
                value = inputs[name]
            elif not field.is_required():
                value = field.get_default(call_default_factory=True)
            else:
                raise TypeError(f"{type(self).__name__}() needs the argument {name!r}")
            props[name] = pulumi.Output.secret(value) if secret and value is not None else value
            if secret:
                secrets.append(name)
        for name, field in provider.Outputs.model_fields.items():
            props.setdefault(name, None)
            if isinstance(field.json_schema_extra, dict) and field.json_schema_extra.get("secret"):
                secrets.append(name)
        props.update(connection.props())
        own = pulumi.ResourceOptions(
            additional_secret_outputs=[*secrets, "fly_token"],
            aliases=[pulumi.Alias(type_=UNTYPED_DYNAMIC_TYPE)],
        )
        super().__init__(provider(), resource_name, props, pulumi.ResourceOptions.merge(opts, own))
