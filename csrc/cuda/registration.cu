// CUDA half of melnet_fast._C. It holds the CUDA registrations of the ops (the GPU training and sampling
// issues add their kernels here and in sibling .cu files); kept lean because torch's headers dominate the
// compile time of every .cu file.
#include <cuda_runtime.h>
#include <torch/library.h>

bool melnet_fast_cuda_built() { return true; }

TORCH_LIBRARY_IMPL(melnet_fast, CUDA, m) {
  // No CUDA kernels are registered yet: calls on CUDA tensors fail in the dispatcher with a clear
  // "no kernel for CUDA" error, and the Python layer never routes there before the cuda backend exists.
}
