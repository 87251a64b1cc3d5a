#!/usr/bin/env bash
# The demo in one command: creates .venv like scripts/test.sh (pinned torch, built extension), then trains a small
# MelNet on the embedded synthetic music on the CPU for a few minutes, prints its held-out NLL next to a
# per-channel Gaussian baseline, and writes sampled audio and a real-vs-generated figure under demo_out/.
# Extra arguments go to `melnet-fast demo` (see `melnet-fast demo --help`), e.g. --train-minutes 5 --out DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -r requirements-dev.txt
MAX_JOBS=${MAX_JOBS:-2} .venv/bin/python -m pip install -q --disable-pip-version-check --no-build-isolation --no-deps -e .
exec .venv/bin/melnet-fast demo "$@"
