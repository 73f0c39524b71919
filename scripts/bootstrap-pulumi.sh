#!/usr/bin/env bash
# Make the pinned Pulumi CLI and a Python language host available, offline-friendly.
#
# Two ways, and the script says which it took (on stderr, and in the install's PROVENANCE file):
# - "official": where the official installer is reachable (a laptop, GitHub runners), the full release,
#   CLI and its own Python language host, both v$PULUMI_VERSION;
# - "modules": where only package registries are reachable (this project's dev machines and CI), the
#   CLI built from the Go module registry at v$PULUMI_VERSION, and the Python language host of
#   v$PYTHON_HOST_VERSION, the newest the registry serves (later hosts are a nested module it refuses),
#   wrapped so it finds the project's virtualenv (see pulumi-language-python.in), behind a small shim of
#   ours (python-host-shim/main.go) that runs Python policy packs as the CLI's own host does. The wrapper
#   and the shim are (re)installed whenever this checkout's copy differs from the cached one, without
#   rebuilding the CLI.
#
# The cache directory's name holds every component's version and the way it was made, so an old cache
# is never mistaken for a new one. Prints the bin directory on stdout (last line); the rest goes to stderr.
set -euo pipefail

PULUMI_VERSION="${PULUMI_VERSION:-3.259.0}"
PYTHON_HOST_VERSION="${PYTHON_HOST_VERSION:-3.79.0}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE_ROOT="${ARTIFACT_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/artifact-slices}"
OFFICIAL="$CACHE_ROOT/pulumi-v$PULUMI_VERSION-official"
MODULES="$CACHE_ROOT/pulumi-v$PULUMI_VERSION-modules-python-host-v$PYTHON_HOST_VERSION"

log() { printf 'bootstrap-pulumi: %s\n' "$*" >&2; }

SHIM_SRC="$HERE/python-host-shim"
# The revision of the wrapper and the shim this checkout has; a module install records the one it carries.
shim_rev() {
  local sum=(sha256sum); command -v sha256sum >/dev/null || sum=(shasum -a 256)  # macOS has only shasum
  cat "$SHIM_SRC"/*.go "$HERE/pulumi-language-python.in" | "${sum[@]}" | cut -c1-16
}

# ensure_shim DIR: a module install's wrapper and policy-pack shim are this checkout's (no-op on the official
# release, which has neither). Built beside the target and renamed into place, so a concurrent run never
# executes half a file.
ensure_shim() {
  local dir="$1" rev
  [ -d "$dir/libexec" ] || return 0
  rev="$(shim_rev)"
  if [ "$(cat "$dir/libexec/shim.rev" 2>/dev/null)" = "$rev" ] && [ -x "$dir/libexec/pulumi-language-python-shim" ]; then
    return 0
  fi
  command -v go >/dev/null || { log "error: building the policy-pack shim needs a Go toolchain"; return 1; }
  log "building the Python host's policy-pack shim ($rev)"
  local work="$dir/build-shim.$$"
  rm -rf "$work"; mkdir -p "$work"
  cp "$SHIM_SRC"/*.go "$work/"
  printf 'module artifact.local/python-host-shim\n\ngo 1.25\n\nrequire github.com/pulumi/pulumi/sdk/v3 v%s\n' \
    "$PULUMI_VERSION" >"$work/go.mod"
  local goenv=(env GOFLAGS="-mod=mod -buildvcs=false" GOTOOLCHAIN=local CGO_ENABLED=0)
  "${goenv[@]}" go -C "$work" mod tidy -e >"$work/tidy.log" 2>&1 || true
  if ! "${goenv[@]}" go -C "$work" build -trimpath -ldflags "-s -w" -o "$work/shim" . >&2; then
    rm -rf "$work"; log "error: the policy-pack shim did not build"; return 1
  fi
  install -m 0755 "$work/shim" "$dir/libexec/.pulumi-language-python-shim.$$"
  mv -f "$dir/libexec/.pulumi-language-python-shim.$$" "$dir/libexec/pulumi-language-python-shim"
  install -m 0755 "$HERE/pulumi-language-python.in" "$dir/bin/.pulumi-language-python.$$"
  mv -f "$dir/bin/.pulumi-language-python.$$" "$dir/bin/pulumi-language-python"
  printf '%s\n' "$rev" >"$dir/libexec/.shim.rev.$$" && mv -f "$dir/libexec/.shim.rev.$$" "$dir/libexec/shim.rev"
  rm -rf "$work"
}

complete() {  # complete DIR: a finished install of the pinned CLI
  local bin="$1/bin"
  [ -f "$1/PROVENANCE" ] && [ -x "$bin/pulumi" ] && [ -x "$bin/pulumi-language-python" ] \
    && [ -x "$bin/pulumi-language-python-exec" ] && [ -x "$bin/pulumi-resource-pulumi-python" ] \
    && { [ ! -d "$1/libexec" ] || [ -x "$1/libexec/pulumi-language-python-exec" ]; } \
    && "$bin/pulumi" version 2>/dev/null | grep -qx "v$PULUMI_VERSION"
}

for dest in "$OFFICIAL" "$MODULES"; do
  if complete "$dest"; then
    ensure_shim "$dest"
    log "$(head -n1 "$dest/PROVENANCE") (cached in $dest)"
    echo "$dest/bin"
    exit 0
  fi
done

try_official_installer() {
  command -v curl >/dev/null || return 1
  curl -fsS --max-time 5 -o /dev/null https://get.pulumi.com/ 2>/dev/null || return 1
  log "the official installer is reachable: installing the v$PULUMI_VERSION release"
  local tmp; tmp="$(mktemp -d)"
  if ! curl -fsSL https://get.pulumi.com | sh -s -- --version "$PULUMI_VERSION" --install-root "$tmp" \
      --no-edit-path >&2; then
    rm -rf "$tmp"; return 1
  fi
  rm -rf "$OFFICIAL"; mkdir -p "$OFFICIAL/bin"
  cp "$tmp"/bin/* "$OFFICIAL/bin/"
  rm -rf "$tmp"
  printf 'official release v%s: CLI and Python language host v%s\n' "$PULUMI_VERSION" "$PULUMI_VERSION" \
    >"$OFFICIAL/PROVENANCE"
  echo "$OFFICIAL"
}

# go_build WORKDIR GO_MOD_BODY PACKAGE OUTPUT VERSION: one throwaway wrapper module per component,
# because the CLI and the host come from two releases of the same modules.
go_build() {
  local work="$1" mod="$2" pkg="$3" out="$4" version="$5"
  rm -rf "$work"; mkdir -p "$work"
  printf '%s\n' "$mod" >"$work/go.mod"
  printf '//go:build tools\n\npackage tools\n\nimport _ "%s"\n' "$pkg" >"$work/tools.go"
  (
    cd "$work"
    export GOFLAGS="-mod=mod -buildvcs=false" GOTOOLCHAIN=local CGO_ENABLED=0
    go mod tidy -e >"$work/tidy.log" 2>&1 || true
    # The CLI reads its version from sdk/v3/go/common/version (3.259) or pkg/v3/version (3.79); the
    # Automation API refuses a CLI without one. Setting a symbol a release doesn't have is harmless.
    go build -trimpath -ldflags "-s -w -checklinkname=0 \
      -X github.com/pulumi/pulumi/pkg/v3/version.Version=v$version \
      -X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=v$version" -o "$out" "$pkg" >&2
  )
}

build_from_go_modules() {
  command -v go >/dev/null || { log "error: neither the official installer nor a Go toolchain is available"; return 1; }
  local need="1.25" have; have="$(go env GOVERSION | sed 's/^go//')"
  if [ "$(printf '%s\n%s\n' "$need" "$have" | sort -V | head -n1)" != "$need" ]; then
    log "error: building Pulumi v$PULUMI_VERSION needs Go >= $need; this machine has Go $have"; return 1
  fi
  log "the official installer is not reachable: building the CLI v$PULUMI_VERSION and the Python language host" \
      "v$PYTHON_HOST_VERSION from the Go module registry (cold: about 10 minutes on 2 cores)"
  rm -rf "$MODULES"; mkdir -p "$MODULES/bin" "$MODULES/libexec"
  # pkg/v3's go.mod replaces sdk/v3 with ../sdk and atotto/clipboard with a fork; Go ignores `replace`
  # in a dependency, so the wrapper restates the fork and pins sdk/v3 to the same release.
  go_build "$MODULES/build-cli" "module artifact.local/pulumi-cli

go 1.25

require (
	github.com/pulumi/pulumi/pkg/v3 v$PULUMI_VERSION
	github.com/pulumi/pulumi/sdk/v3 v$PULUMI_VERSION
)

replace github.com/atotto/clipboard => github.com/tgummerer/clipboard v0.0.0-20241001131231-d02d263e614e" \
    github.com/pulumi/pulumi/pkg/v3/cmd/pulumi "$MODULES/bin/pulumi" "$PULUMI_VERSION"
  go_build "$MODULES/build-host" "module artifact.local/pulumi-python-host

go 1.21

require github.com/pulumi/pulumi/sdk/v3 v$PYTHON_HOST_VERSION" \
    github.com/pulumi/pulumi/sdk/v3/python/cmd/pulumi-language-python \
    "$MODULES/libexec/pulumi-language-python" "$PYTHON_HOST_VERSION"
  # The shims come from the CLI's own release (the exec shim the host runs, the dynamic provider's
  # launcher); module cache files are read-only, hence install -m 0755.
  local sdk; sdk="$(cd "$MODULES/build-cli" && GOFLAGS=-mod=mod go list -m -f '{{.Dir}}' github.com/pulumi/pulumi/sdk/v3)"
  install -m 0755 "$sdk/python/cmd/pulumi-language-python-exec" "$MODULES/bin/pulumi-language-python-exec"
  # The host looks for the exec shim beside its own binary.
  install -m 0755 "$sdk/python/cmd/pulumi-language-python-exec" "$MODULES/libexec/pulumi-language-python-exec"
  install -m 0755 "$sdk/python/dist/pulumi-resource-pulumi-python" "$MODULES/bin/pulumi-resource-pulumi-python"
  rm -rf "$MODULES/build-cli" "$MODULES/build-host"
  ensure_shim "$MODULES"
  printf 'built from Go modules: CLI v%s, Python language host v%s (wrapped), shims v%s\n' \
    "$PULUMI_VERSION" "$PYTHON_HOST_VERSION" "$PULUMI_VERSION" >"$MODULES/PROVENANCE"
  echo "$MODULES"
}

start=$(date +%s)
if [ -n "${ARTIFACT_PULUMI_FROM_MODULES:-}" ] || ! dest="$(try_official_installer)"; then
  dest="$(build_from_go_modules)"
fi
complete "$dest" || { log "error: the install in $dest is incomplete or does not report v$PULUMI_VERSION"; exit 1; }
log "$(head -n1 "$dest/PROVENANCE"), ready in $dest ($(( $(date +%s) - start ))s)"
echo "$dest/bin"
