#!/usr/bin/env bash
# Rehearse the device check here, as the lent GPU machine will run it:
#
#   bash tests/device/rehearse.sh
#
# 1. builds (once; reused from the cache after) a virtual environment with only the packages the
#    device has (device-has.txt), this machine's CPU torch 2.13.0 standing in for its CUDA 2.11;
# 2. runs wheels.sh for this Python into the cache (not over a prepared .device-wheels/);
# 3. runs check.sh in that environment with no index reachable (PIP_NO_INDEX=1, no pip config)
#    and the project not installed: it must import the whole worker side, complete a short CPU
#    run, then stop with exit 2 and "no CUDA GPU".
# Exit 0 when all that held, 1 when not. The cache: $REHEARSAL_CACHE, else ~/.cache/joulelab-rehearsal.
# tests/device/test_rehearsal.py runs it (slow).
set -euo pipefail
cd "$(dirname "$0")/../.."
base="${PYTHON:-python3}"
version=$("$base" -c 'import sys; print(*sys.version_info[:2], sep=".")')
cache="${REHEARSAL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/joulelab-rehearsal}"
mapfile -t has < <(grep -v -e '^#' -e '^[[:space:]]*$' tests/device/device-has.txt)
# the environment is rebuilt when the package list changes
env="$cache/py$version-$(printf '%s\n' "${has[@]}" | sha256sum | cut -c1-12)"
if [ ! -e "$env/.complete" ]; then
    echo "rehearse: building $env (the device's packages only; torch 2.13.0 CPU build for the device's CUDA one)"
    rm -rf "$env"
    "$base" -m venv "$env"
    others=()
    for name in "${has[@]}"; do [ "$name" = torch ] || others+=("$name"); done
    "$env/bin/python" -m pip install --quiet torch==2.13.0 "${others[@]}"
    touch "$env/.complete"
fi
wheels="$cache/wheels-py$version"
if ! fetched=$(DEVICE_WHEELS="$wheels" PYTHON="$base" bash tests/device/wheels.sh "$version" 2>&1); then
    echo "$fetched"
    echo "REHEARSAL FAILED: wheels.sh could not fetch the carried wheels"
    exit 1
fi
grep -v '^WARNING: Location' <<<"$fetched"
log=$(mktemp "${TMPDIR:-/tmp}/joulelab-rehearsal.XXXXXX")
trap 'rm -f "$log"' EXIT
set +e
env -u PYTHONPATH -u PIP_FIND_LINKS PIP_NO_INDEX=1 PIP_CONFIG_FILE=/dev/null \
    PYTHON="$env/bin/python" DEVICE_WHEELS="$wheels" bash tests/device/check.sh 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
set -e
problems=()
[ "$rc" -eq 2 ] || problems+=("check.sh exited $rc, not 2")
grep -q "smoke run: complete" "$log" || problems+=("no completed CPU smoke run")
grep -q "no CUDA GPU" "$log" || problems+=("no line saying no CUDA GPU is visible")
if [ ${#problems[@]} -gt 0 ]; then
    echo "REHEARSAL FAILED: $(IFS=';'; echo "${problems[*]}")"
    exit 1
fi
echo "REHEARSAL PASSED: the device's packages plus the carried wheels, no registry: worker side imported, CPU smoke run complete, exit 2 for no CUDA GPU"
