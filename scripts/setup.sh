# shellcheck shell=bash
# Source me: `source scripts/setup.sh` puts the pinned Pulumi engine and the project's virtualenv on PATH,
# with an environment that never reaches for the network. The work is done by scripts/prepare-env in a
# child process, so sourcing this into an interactive shell changes no shell option of yours.
#
# ARTIFACT_PYTHON picks the interpreter the virtualenv is made with (default python3) and ARTIFACT_VENV
# the virtualenv (default .venv, which Pulumi.yaml names); a second run takes well under a second.
_artifact_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if _artifact_env="$(bash "$_artifact_root/scripts/prepare-env")"; then
  eval "$_artifact_env"
  unset _artifact_env _artifact_root
else
  unset _artifact_env _artifact_root
  echo "setup: failed (see the messages above)" >&2
  # shellcheck disable=SC2317  # exit only when executed rather than sourced
  return 1 2>/dev/null || exit 1
fi
