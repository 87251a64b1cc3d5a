#!/usr/bin/env bash
# The project's test command: creates the pinned environment (.venv), builds the extension, runs ruff and pytest.
# Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -r requirements-dev.txt
MAX_JOBS=${MAX_JOBS:-2} .venv/bin/python -m pip install -q --disable-pip-version-check --no-build-isolation --no-deps -e .
.venv/bin/ruff check .
exec .venv/bin/python -m pytest -q "$@"
