#!/usr/bin/env bash
# The second test environment: the newest torch that pip installs here (unpinned, with the numpy and triton it
# brings), and the package installed as users type it: an sdist made by `python -m build`, then a plain
# `pip install` of it with build isolation, so the build gets its own torch (the same release, chosen by
# build_tools/build_backend.py). CPU kernels only (MELNET_FAST_CUDA=0). Then the op tests and the packaging tests
# run against that installation, from a copy of tests/ so that the source tree is not imported.
# The environment is kept in $MELNET_FAST_CI_CACHE (default ~/.cache/melnet_fast_ci) and upgraded in place.
# Needs .venv from scripts/env.sh (for `python -m build`). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
CACHE=${MELNET_FAST_CI_CACHE:-$HOME/.cache/melnet_fast_ci}
VENV=$CACHE/venv-newest-torch
PY=${PYTHON:-python3}
pip_q() { "$VENV/bin/python" -m pip -q --disable-pip-version-check "$@" 2> >(grep -v "^WARNING: Location" >&2); }

if [ ! -x "$VENV/bin/python" ]; then
  mkdir -p "$CACHE"
  "$PY" -m venv "$VENV"
fi
pip_q install --upgrade torch numpy pytest packaging
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

.venv/bin/python -m build --sdist --outdir "$WORK/dist" . > "$WORK/build.log" 2>&1 || { cat "$WORK/build.log"; exit 1; }
MELNET_FAST_CUDA=0 MAX_JOBS=${MAX_JOBS:-2} pip_q install --force-reinstall --no-deps "$WORK"/dist/melnet_fast-*.tar.gz

mkdir -p "$WORK/run"
cp -r tests "$WORK/run/tests"
cp -r pyproject.toml build_tools "$WORK/run/"
cd "$WORK/run"
"$VENV/bin/python" -c "import torch, numpy, melnet_fast; from melnet_fast import _extension as e; \
print(f'newest torch environment: torch {torch.__version__}, numpy {numpy.__version__}, melnet_fast from', \
melnet_fast.__file__, 'extension:', e.build_record() if e.extension() else e.load_error())"
# setup.py's guards (tests/packaging/test_setup_guards.py) run setup.py of the source tree: scripts/test.sh runs them.
exec "$VENV/bin/python" -m pytest -q tests/ops tests/packaging --ignore=tests/packaging/test_setup_guards.py "$@"
