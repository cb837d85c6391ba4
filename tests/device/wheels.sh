#!/usr/bin/env bash
# The wheels the lent GPU machine lacks, for the device check to run there with no registry:
#
#   bash tests/device/wheels.sh [PYTHON_VERSION]     (default 3.12, the device's CPython)
#
# Downloads tests/device/carried.txt's wheels for that CPython on manylinux x86-64 into
# .device-wheels/ at the checkout root (git-ignored; emptied first), nothing the device already has
# (device-has.txt), and checks that the working tree plus the wheels stay inside the 64 MiB a
# device call may carry. Name `.device-wheels` in the call's `carry`; check.sh installs them there.
# Uses $PYTHON's pip if set, else python3's; $DEVICE_WHEELS names another folder (the rehearsal's).
# Exit 2 on a bad argument.
set -euo pipefail
cd "$(dirname "$0")/../.."
version="${1:-3.12}"
if ! [[ "$version" =~ ^3\.[0-9]+$ ]]; then
    echo "wheels.sh: '$version' is not a CPython version; give MAJOR.MINOR, e.g. 3.12" >&2
    exit 2
fi
py="${PYTHON:-python3}"
dest="${DEVICE_WHEELS:-.device-wheels}"
mapfile -t wheels < <(grep -v -e '^#' -e '^[[:space:]]*$' tests/device/carried.txt)
rm -rf "$dest"
mkdir -p "$dest"
# The platforms pip must be told one by one: it matches manylinux_2_N exactly.
"$py" -m pip download --quiet --no-deps --only-binary=:all: --python-version "$version" --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 \
    -d "$dest" "${wheels[@]}"
limit=$((64 * 1024 * 1024))
wheel_bytes=$(du -cb "$dest"/*.whl | tail -1 | cut -f1)
# what travels besides: tracked and untracked-not-ignored files
tree_bytes=$(git ls-files -z --cached --others --exclude-standard | du -cb --files0-from=- 2>/dev/null | tail -1 | cut -f1)
echo "wheels.sh: ${#wheels[@]} wheels for CPython $version in $dest/ ($((wheel_bytes / 1024)) KiB):"
ls -1 "$dest"
echo "wheels.sh: with the working tree ($((tree_bytes / 1024)) KiB): $(((wheel_bytes + tree_bytes) / 1024)) KiB of the $((limit / 1024)) KiB a call carries"
if ((wheel_bytes + tree_bytes > limit)); then
    echo "wheels.sh: over the 64 MiB a device call carries; carry fewer wheels or make the tree smaller" >&2
    exit 1
fi
