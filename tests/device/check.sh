#!/usr/bin/env bash
# Device check: on a machine with an NVIDIA GPU, run presets/gpu.toml briefly and compare NVML's
# energy counter with its integrated polled power per phase (see check_gpu.py). Under 5 minutes.
#
#   bash tests/device/check.sh            (from anywhere; run in the repository it belongs to)
#
# Installs nothing. It expects the project installed with a CUDA build of torch
# (`pip install -e .` in an environment whose torch sees the GPU): it uses $PYTHON if set, else
# ./.venv/bin/python if there is one, else python3. Exit codes: 0 pass, 1 a check failed,
# 2 cannot check here (no CUDA GPU, no NVML, project not importable).
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ -n "${PYTHON:-}" ]; then py="$PYTHON"
elif [ -x .venv/bin/python ]; then py=.venv/bin/python
else py=python3
fi
exec timeout 295 "$py" tests/device/check_gpu.py "$@"
