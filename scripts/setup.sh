#!/usr/bin/env bash
# Idempotent setup, sourced by scripts/run-local and scripts/test: the pinned Pulumi engine, the
# project's virtualenv with its dependencies, and an environment that never reaches for the network.
# A second run takes seconds (both the engine build and the virtualenv are cached).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

PULUMI_BIN="$(bash "$ROOT/scripts/bootstrap-pulumi.sh")"
export PATH="$PULUMI_BIN:$PATH"
export ARTIFACT_PULUMI_BIN="$PULUMI_BIN"

PYTHON="${PYTHON:-python3}"
VENV="$ROOT/.venv"
stamp="$VENV/.requirements.sha256"
want="$(cat "$ROOT/requirements.txt" "$ROOT/requirements-dev.txt" | sha256sum | cut -d' ' -f1)"
if [ ! -x "$VENV/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: installing Python dependencies into .venv" >&2
  [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip >&2
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$ROOT/requirements-dev.txt" >&2
  echo "$want" >"$stamp"
fi
export PATH="$VENV/bin:$PATH"

# Nothing reaches for the network: no update check, no plugin downloads.
export PULUMI_SKIP_UPDATE_CHECK=true
export PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION=true
export PULUMI_AUTOMATION_API_SKIP_VERSION_CHECK="${PULUMI_AUTOMATION_API_SKIP_VERSION_CHECK:-false}"
