#!/usr/bin/env bash
# The project's test command: creates the pinned environment (.venv), builds the extension, runs ruff and pytest.
# Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
.venv/bin/ruff check .
exec .venv/bin/python -m pytest -q "$@"
