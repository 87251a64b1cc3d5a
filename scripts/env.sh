# Sourced by scripts/test.sh and scripts/demo.sh: creates .venv with the pinned environment
# (requirements-dev.txt) and builds the package and its extension into it.
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -r requirements-dev.txt
# Development builds compile the CUDA kernels for H100 / H200 only (the distributable default has four
# architectures and PTX: build_tools/build_flags.py).
export MELNET_FAST_CUDA_ARCHS=${MELNET_FAST_CUDA_ARCHS:-9.0}
# pip builds an editable install in a fresh temporary folder (a full rebuild, minutes with CUDA): skip it when
# nothing the build reads has changed since the last one (sources, build scripts, build flags).
build_inputs=(csrc setup.py pyproject.toml build_tools MANIFEST.in)
build_stamp() {
  (env | grep -E '^(MELNET_FAST_(CUDA|CUDA_ARCHS|NVCC_THREADS|DEBUG_BUILD)|CUDA_HOME|TORCH_CUDA_ARCH_LIST)=' | sort
   git ls-files -s -- "${build_inputs[@]}"
   git diff --no-ext-diff -- "${build_inputs[@]}"
   git ls-files -z --others --exclude-standard -- "${build_inputs[@]}" | xargs -0 -r sha1sum
   ls -l melnet_fast/_C*.so 2>/dev/null || true) | sha1sum
}
# The stamp is taken after the build, so it names the extension the build wrote (a removed or replaced .so
# rebuilds).
if [ "$(cat .venv/.melnet_fast_build 2>/dev/null)" != "$(build_stamp)" ]; then
  MAX_JOBS=${MAX_JOBS:-2} .venv/bin/python -m pip install -q --disable-pip-version-check --no-build-isolation \
    --no-deps -e .
  build_stamp > .venv/.melnet_fast_build
fi
