#!/usr/bin/env bash
# Compile one CUDA source of csrc/cuda/ alone, with the flags of the extension's build, into a scratch folder:
# a quick check that it compiles (no GPU needed) without rebuilding or touching the installed extension.
#   scripts/check_cuda_compile.sh csrc/cuda/foo.cu [outdir]
set -euo pipefail
cd "$(dirname "$0")/.."
src=$1
out=${2:-/tmp/melnet_fast_cuda_check}
mkdir -p "$out"
py=.venv/bin/python
torch_inc=$($py -c "import torch, os; print(os.path.dirname(torch.__file__) + '/include')")
py_inc=$($py -c "import sysconfig; print(sysconfig.get_paths()['include'])")
cuda=${CUDA_HOME:-/usr/local/cuda}
exec "$cuda/bin/nvcc" -DMELNET_FAST_WITH_CUDA=1 -I"$torch_inc" -I"$torch_inc/torch/csrc/api/include" \
  -I"$cuda/include" -I"$py_inc" -Icsrc -c "$src" -o "$out/$(basename "$src").o" \
  -D__CUDA_NO_HALF_OPERATORS__ -D__CUDA_NO_HALF_CONVERSIONS__ -D__CUDA_NO_BFLOAT16_CONVERSIONS__ \
  -D__CUDA_NO_HALF2_OPERATORS__ --expt-relaxed-constexpr --compiler-options "-fPIC" -O3 -std=c++17 \
  --use_fast_math -lineinfo --threads=1 -gencode=arch=compute_90,code=sm_90 \
  -DTORCH_API_INCLUDE_EXTENSION_H -DTORCH_EXTENSION_NAME=_C -Xptxas -v 2>&1
