#!/usr/bin/env bash
# Device check: on a machine with an NVIDIA GPU, run presets/gpu.toml briefly and compare NVML's
# energy counter with its integrated polled power per phase, and a JouleLab training step with a
# plain CUDA loop of the same model (see check_gpu.py). Under 4 minutes.
#
#   bash tests/device/check.sh            (from anywhere; run in the repository it belongs to)
#
# Installs nothing from a registry. Two ways to run:
# - the project installed (`pip install -e .` with a CUDA build of torch), as on a user's machine;
# - on the lent GPU machine, which has torch and most dependencies but no registry: first run
#   `bash tests/device/wheels.sh` here, carry `.device-wheels`; this script then installs those
#   wheels into a temporary folder (pip --no-index --no-deps --target) and puts it and the checkout
#   on PYTHONPATH (no editable install). $DEVICE_WHEELS names another folder than .device-wheels.
# It uses $PYTHON if set, else ./.venv/bin/python if there is one, else python3. With $OUT set, the
# report is also written there as JSON with the run logs as one archive. Exit codes: 0 pass, 1 a
# check failed, 2 cannot check here (no CUDA GPU, no NVML, the project not importable).
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ -n "${PYTHON:-}" ]; then py="$PYTHON"
elif [ -x .venv/bin/python ]; then py=.venv/bin/python
else py=python3
fi
carried="${DEVICE_WHEELS:-.device-wheels}"
if [ -d "$carried" ]; then
    shopt -s nullglob
    wheels=("$carried"/*.whl)
    if [ ${#wheels[@]} -eq 0 ]; then
        echo "device check: $carried/ holds no wheels; run tests/device/wheels.sh or remove it" >&2
        exit 2
    fi
    site=$(mktemp -d "${TMPDIR:-/tmp}/joulelab-device-site.XXXXXX")
    trap 'rm -rf "$site"' EXIT
    if ! "$py" -m pip install --quiet --no-index --no-deps --no-compile --no-cache-dir --target "$site" "${wheels[@]}"; then
        echo "device check: the carried wheels do not install for $("$py" -V 2>&1); run tests/device/wheels.sh $("$py" -c 'import sys; print(*sys.version_info[:2], sep=".")')" >&2
        exit 2
    fi
    export PYTHONPATH="$site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
    echo "device check: $("$py" -V 2>&1) with the carried wheels (${wheels[*]##*/}) in $site and the checkout $PWD on PYTHONPATH, not installed"
fi
timeout 235 "$py" tests/device/check_gpu.py "$@"
