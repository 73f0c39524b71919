#!/usr/bin/env bash
# Make a pinned Pulumi CLI and its Python language host available, offline-friendly.
#
# Where the official installer is reachable we use it; where only package registries are
# reachable (this project's CI and dev machines), we build the CLI and the Python language host
# from the Go module registry. The build is cached per version, so a second run takes seconds.
#
# Prints the bin directory on stdout (last line); everything else goes to stderr.
set -euo pipefail

PULUMI_VERSION="${PULUMI_VERSION:-3.79.0}"
CACHE_ROOT="${ARTIFACT_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/artifact-slices}"
DEST="$CACHE_ROOT/pulumi-v$PULUMI_VERSION"
BIN="$DEST/bin"
STAMP="$DEST/.complete"

log() { printf 'bootstrap-pulumi: %s\n' "$*" >&2; }

have_complete_install() {
  [ -f "$STAMP" ] && [ -x "$BIN/pulumi" ] && [ -x "$BIN/pulumi-language-python" ] \
    && [ -x "$BIN/pulumi-language-python-exec" ] && [ -x "$BIN/pulumi-resource-pulumi-python" ] \
    && "$BIN/pulumi" version 2>/dev/null | grep -qx "v$PULUMI_VERSION"
}

if have_complete_install; then
  log "pulumi v$PULUMI_VERSION already in $BIN"
  echo "$BIN"
  exit 0
fi

try_official_installer() {
  # The official installer fetches a release archive; it needs the internet, which CI here lacks.
  command -v curl >/dev/null || return 1
  curl -fsS --max-time 5 -o /dev/null https://get.pulumi.com/ 2>/dev/null || return 1
  log "official installer reachable: installing v$PULUMI_VERSION"
  local tmp; tmp="$(mktemp -d)"
  curl -fsSL https://get.pulumi.com | sh -s -- --version "$PULUMI_VERSION" --install-root "$tmp" --no-edit-path >&2 || return 1
  mkdir -p "$BIN"
  cp "$tmp"/bin/* "$BIN"/
  rm -rf "$tmp"
}

build_from_go_modules() {
  command -v go >/dev/null || { log "error: neither the official installer nor a Go toolchain is available"; return 1; }
  log "building pulumi v$PULUMI_VERSION from the Go module registry (cold build: several minutes)"
  local work="$DEST/build"
  rm -rf "$work"; mkdir -p "$work" "$BIN"
  # A throwaway wrapper module. pkg/v3's own go.mod has `replace` directives (sdk => ../sdk and two
  # forks) that Go ignores in a dependency, so we restate the forks here, and pin sdk/v3 to the same
  # release.
  #
  # The Python language host: from v3.80 on it lives in its own nested module
  # (sdk/python/cmd/pulumi-language-python/v3), which the module registry reachable here does not
  # serve at any version. Up to v3.79 it is a package of sdk/v3, which is why v3.79.0 is the pinned
  # release: CLI, language host, shims and the Python SDK all come from that one release.
  cat >"$work/go.mod" <<MOD
module artifact.local/pulumi-bootstrap

go 1.21

require (
	github.com/pulumi/pulumi/pkg/v3 v$PULUMI_VERSION
	github.com/pulumi/pulumi/sdk/v3 v$PULUMI_VERSION
)

replace github.com/sergi/go-diff => github.com/sergi/go-diff v1.1.0

replace github.com/xanzy/ssh-agent => github.com/pulumi/ssh-agent v0.5.1
MOD
  cat >"$work/tools.go" <<'GO'
//go:build tools

package tools

import (
	_ "github.com/pulumi/pulumi/pkg/v3/cmd/pulumi"
	_ "github.com/pulumi/pulumi/sdk/v3/python/cmd/pulumi-language-python"
)
GO
  (
    cd "$work"
    export GOFLAGS="-mod=mod -buildvcs=false" GOTOOLCHAIN=local CGO_ENABLED=0
    go mod tidy -e >&2 2>"$work/tidy.log" || true
    go mod download github.com/pulumi/pulumi/pkg/v3 github.com/pulumi/pulumi/sdk/v3 >&2
    # The CLI reads its version from pkg/v3/version up to v3.8x and from sdk/v3/go/common/version later;
    # the Automation API refuses a CLI without a version, so set both.
    local ldflags="-s -w -checklinkname=0 -X github.com/pulumi/pulumi/pkg/v3/version.Version=v$PULUMI_VERSION -X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=v$PULUMI_VERSION"
    go build -trimpath -ldflags "$ldflags" -o "$BIN/pulumi" github.com/pulumi/pulumi/pkg/v3/cmd/pulumi >&2
    go build -trimpath -ldflags "$ldflags" -o "$BIN/pulumi-language-python" github.com/pulumi/pulumi/sdk/v3/python/cmd/pulumi-language-python >&2
    # The shims are scripts in the sdk module; module cache files are read-only, so install 0755.
    local sdk; sdk="$(go list -m -f '{{.Dir}}' github.com/pulumi/pulumi/sdk/v3)"
    install -m 0755 "$sdk/python/cmd/pulumi-language-python-exec" "$BIN/pulumi-language-python-exec"
    install -m 0755 "$sdk/python/dist/pulumi-resource-pulumi-python" "$BIN/pulumi-resource-pulumi-python"
  )
}

start=$(date +%s)
if ! try_official_installer; then
  build_from_go_modules
fi
"$BIN/pulumi" version | grep -qx "v$PULUMI_VERSION" || { log "error: built pulumi does not report v$PULUMI_VERSION"; exit 1; }
date -u +%FT%TZ >"$STAMP"
log "pulumi v$PULUMI_VERSION ready in $BIN ($(( $(date +%s) - start ))s)"
echo "$BIN"
