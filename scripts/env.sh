# Sourced by scripts/test.sh and scripts/demo.sh: creates .venv with the pinned environment
# (requirements-dev.txt) and builds the package and its extension into it.
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -r requirements-dev.txt
# Development builds compile the CUDA kernels for H100 / H200 only (the distributable default has four
# architectures and PTX: build_tools/build_flags.py).
MAX_JOBS=${MAX_JOBS:-2} MELNET_FAST_CUDA_ARCHS=${MELNET_FAST_CUDA_ARCHS:-9.0} .venv/bin/python -m pip install -q --disable-pip-version-check --no-build-isolation --no-deps -e .
