"""The org slice's CrossGuard policy pack: `pulumi preview --policy-pack policy` (and `up`).

The rules and their enforcement levels are in rules.py; this file reads the stack's `artifact-policy:*` config
(the engine hands the pack the stack's config before it starts) and registers one policy per rule.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

# The pack reuses the project's own definitions (region table, what a credential looks like): the checkout's
# root, even when the pack is reached through a symlink (the e2e tests' project directories).
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pulumi.runtime  # noqa: E402
from pulumi_policy import (  # noqa: E402
    EnforcementLevel,
    PolicyPack,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
)
from pulumi_policy.proxy import UnknownValueError  # noqa: E402

from rules import CONFIG_NAMESPACE, POLICIES, PolicySpec, Settings, SettingsError, settings_from  # noqa: E402

PACK_NAME = "artifact-slice"


def _stack_settings() -> Settings:
    prefix = f"{CONFIG_NAMESPACE}:"
    config = {k.removeprefix(prefix): v for k, v in pulumi.runtime.get_config_env().items() if k.startswith(prefix)}
    return settings_from(os.environ.get("PULUMI_STACK", ""), config)


def _policy(spec: PolicySpec, settings: Settings) -> ResourceValidationPolicy:
    def validate(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
        try:
            violations = list(spec.rule(args.resource_type, args.props, bool(args.opts.protect), settings))
        except UnknownValueError:
            # A preview of a resource whose inputs wait on one still to be made: `up` runs the rule on the
            # known values before that resource is created, and a mandatory violation stops it there.
            return
        for message in violations:
            report_violation(message, None)

    return ResourceValidationPolicy(name=spec.name, description=spec.description, validate=validate,
                                    enforcement_level=EnforcementLevel(settings.levels[spec.name]))


try:
    SETTINGS = _stack_settings()
except SettingsError as exc:
    print(f"policy pack {PACK_NAME}: {exc}", file=sys.stderr)
    sys.exit(2)

PolicyPack(name=PACK_NAME, policies=[_policy(spec, SETTINGS) for spec in POLICIES])
