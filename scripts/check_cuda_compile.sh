#!/usr/bin/env bash
# Compile one CUDA source of csrc/cuda/ alone, with the flags of the extension's build (build_tools/build_flags.py
# and torch's own nvcc flags), into a scratch folder: a quick check that it compiles (no GPU needed) without
# rebuilding or touching the installed extension. Architectures: MELNET_FAST_CUDA_ARCHS, default 9.0 here.
#   scripts/check_cuda_compile.sh csrc/cuda/foo.cu [outdir]
set -euo pipefail
cd "$(dirname "$0")/.."
src=$1
out=${2:-/tmp/melnet_fast_cuda_check}
mkdir -p "$out"
py=.venv/bin/python
cuda=${CUDA_HOME:-/usr/local/cuda}
export CUDA_HOME=$cuda MELNET_FAST_CUDA_ARCHS=${MELNET_FAST_CUDA_ARCHS:-9.0} MELNET_FAST_NVCC_THREADS=1
flags=$($py - <<'PY'
import os, sys
sys.path.insert(0, "build_tools")
import build_flags as f
from torch.utils import cpp_extension as c
archs = f.cuda_archs()
args = f.compile_args(f.cxx_standard(c.include_paths()[0]), f.debug_build(), archs, f.nvcc_threads())["nvcc"]
print(" ".join(["-I" + p for p in c.include_paths()] + c.COMMON_NVCC_FLAGS + args))
PY
)
py_inc=$($py -c "import sysconfig; print(sysconfig.get_paths()['include'])")
# shellcheck disable=SC2086
exec "$cuda/bin/nvcc" -DMELNET_FAST_WITH_CUDA=1 -I"$cuda/include" -I"$py_inc" -Icsrc -c "$src" \
  -o "$out/$(basename "$src").o" $flags --compiler-options "-fPIC" \
  -DTORCH_API_INCLUDE_EXTENSION_H -DTORCH_EXTENSION_NAME=_C -Xptxas -v 2>&1
