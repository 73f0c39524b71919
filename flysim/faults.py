"""Fault injection, driven through the admin API (`/__flysim/faults`).

A fault matches requests by operation (OpenAPI operationId), app and machine;
any of them left out matches everything. It fires `count` times (default:
every time) or with probability `rate`.

kinds:
  status         answer with `status` (default 503) and an ErrorResponse body,
                 plus `Retry-After` when `retry_after` is set
  hang           hold the request `seconds` (default 65, longer than Fly's 60 s
                 proxy timeout) and then answer 504
  fail           network failure: the connection is closed without a complete
                 response (the client sees a transport error)
  crash_on_boot  the next boot(s) of matching machines exit with code 1, printing
                 `message` (if any) to the app's logs first
  check_failure  matching machines' checks (all, or the one named `check`) report
                 `critical` with `message` as output, for as long as the fault
                 exists (remove it with DELETE /__flysim/faults/{id})

`graphql_field` (status/hang/fail on the `GraphQL` operation): only documents that
select this top-level field, e.g. `createLimitedAccessToken`, so one mutation can
be singled out among the queries a client sends around it.

`after_commit=true` (status/hang/fail): the handler runs and its mutation is
kept, but the client gets the fault instead of the real response, to test
that clients adopt what they created instead of duplicating it.
"""

from __future__ import annotations

import random
import threading
from typing import Literal

from pydantic import BaseModel, Field, model_validator

from . import ids

FaultKind = Literal["status", "hang", "fail", "crash_on_boot", "check_failure"]


class FaultSpec(BaseModel):
    kind: FaultKind = "status"
    operation: str | None = None
    app: str | None = None
    machine: str | None = None
    check: str | None = None  # check_failure: one check name (default: all)
    graphql_field: str | None = None  # GraphQL: one top-level field (default: any document)
    status: int = 503
    retry_after: int | None = None
    message: str | None = None
    seconds: float = 65.0
    count: int | None = Field(default=None, ge=1)
    rate: float | None = Field(default=None, ge=0.0, le=1.0)
    after_commit: bool = False

    @model_validator(mode="after")
    def _check(self) -> FaultSpec:
        if self.kind == "status" and not (400 <= self.status <= 599):
            raise ValueError("status must be a 4xx or 5xx code")
        if self.kind in ("crash_on_boot", "check_failure") and self.after_commit:
            raise ValueError(f"after_commit makes no sense for {self.kind}")
        if self.graphql_field is not None and (self.operation not in (None, "GraphQL")
                                               or self.kind in ("crash_on_boot", "check_failure")):
            raise ValueError("graphql_field applies to status, hang and fail faults of the GraphQL operation")
        if self.kind == "check_failure" and (self.count is not None or self.rate is not None):
            raise ValueError("check_failure lasts until it is removed: count and rate do not apply")
        return self


class Fault(FaultSpec):
    id: str = Field(default_factory=lambda: ids.opaque("flt_", 6))
    fired: int = 0
    remaining: int | None = None


class FaultRegistry:
    def __init__(self, seed: int | None = None) -> None:
        self._faults: list[Fault] = []
        self._rng = random.Random(seed)
        self._lock = threading.Lock()  # the admin API may be hit from other threads' loops

    def add(self, spec: FaultSpec) -> Fault:
        fault = Fault(**spec.model_dump())
        fault.remaining = spec.count
        with self._lock:
            self._faults.append(fault)
        return fault

    def list(self) -> list[Fault]:
        with self._lock:
            return list(self._faults)

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def remove(self, fault_id: str) -> bool:
        with self._lock:
            before = len(self._faults)
            self._faults = [f for f in self._faults if f.id != fault_id]
            return len(self._faults) != before

    def _fire(self, f: Fault) -> bool:
        if f.rate is not None and self._rng.random() >= f.rate:
            return False
        if f.remaining is not None:
            if f.remaining <= 0:
                return False
            f.remaining -= 1
        f.fired += 1
        return True

    def _prune(self) -> None:
        self._faults = [f for f in self._faults if f.remaining is None or f.remaining > 0]

    def match_request(self, operation: str, app: str | None, machine: str | None,
                      graphql_fields: frozenset[str] = frozenset()) -> Fault | None:
        with self._lock:
            for f in self._faults:
                if f.kind in ("crash_on_boot", "check_failure") or not _targets(f, app, machine, operation):
                    continue
                if f.graphql_field is not None and f.graphql_field not in graphql_fields:
                    continue
                if self._fire(f):
                    self._prune()
                    return f
            return None

    def take_crash(self, app: str, machine: str) -> Fault | None:
        """The crash_on_boot fault this boot of the machine uses up, if any (its `message` is what the
        crashing process prints)."""
        with self._lock:
            for f in self._faults:
                if f.kind != "crash_on_boot" or not _targets(f, app, machine):
                    continue
                if self._fire(f):
                    self._prune()
                    return f
            return None


    def check_failure(self, app: str, machine: str, check: str) -> Fault | None:
        """The first check_failure fault that covers this check (it is not used up)."""
        with self._lock:
            for f in self._faults:
                if f.kind == "check_failure" and _targets(f, app, machine) and f.check in (None, check):
                    return f
            return None


def _targets(fault: Fault, app: str | None, machine: str | None, operation: str | None = None) -> bool:
    """A fault matches what it names; what it leaves out matches everything. Boots have no operation."""
    return ((operation is None or not fault.operation or fault.operation == operation) and (not fault.app or fault.app == app)
            and (not fault.machine or fault.machine == machine))
