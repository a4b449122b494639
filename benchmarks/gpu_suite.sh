#!/usr/bin/env bash
# benchmarks/gpu_suite.py on a bare GPU machine: installs the carried wheels (benchmarks/wheels,
# see the script's docstring) and this package without dependencies or an index, then runs the
# suite with this script's arguments; results go to $OUT (default /tmp/gpu_suite).
#
#   OUT=/tmp/gpu_suite bash benchmarks/gpu_suite.sh [--rounds 10] [--budget_s 480] [--dry_run]
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if [ -d benchmarks/wheels ]; then
  "$PYTHON" -m pip install -q --no-index --no-deps benchmarks/wheels/*.whl
fi
# No build isolation: it would fetch setuptools, and the machine has no index. The suite runs from
# this folder (on sys.path under -m) either way, so a failed install is only a note.
log="$(mktemp)"
if ! "$PYTHON" -m pip install -q --no-index --no-deps --no-build-isolation -e . >"$log" 2>&1; then
  echo "gpu_suite.sh: pip install -e . failed ($(tail -n 1 "$log")); running from the source tree"
fi
# JAX takes 75% of the GPU's memory by default; XLA's attention at T = 16k needs more, and the
# sampler section's PyTorch needs little.
export XLA_PYTHON_CLIENT_MEM_FRACTION="${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.9}"
exec "$PYTHON" -m benchmarks.gpu_suite --out "${OUT:-/tmp/gpu_suite}" "$@"
