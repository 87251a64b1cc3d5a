#!/usr/bin/env bash
# The demo in one command: creates .venv like scripts/test.sh (pinned torch, built extension), then trains a small
# MelNet on the embedded synthetic music on the CPU for a few minutes, prints its held-out NLL next to a
# per-channel Gaussian baseline, and writes sampled audio and a real-vs-generated figure under demo_out/.
# Extra arguments go to `melnet-fast demo` (see `melnet-fast demo --help`), e.g. --train-minutes 5 --out DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
exec .venv/bin/melnet-fast demo "$@"
