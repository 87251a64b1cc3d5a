// The CUDA half of melnet_fast._C's identity: built_with_cuda() reports whether the CUDA kernels were compiled in.
// The ops register their CUDA kernels in their own files (lstm_sweep_2d.cu, gmm_nll.cu, sample_tier.cu, with
// TORCH_LIBRARY_IMPL), so each source compiles alone and in parallel; the sweep's CUDA entry points
// melnet_fast::lstm_sweep_2d_fwd / _bwd are registered from Python (melnet_fast/ops/lstm_sweep/cpp_backend.py),
// whose host runs this extension's step ops.
bool melnet_fast_cuda_built() { return true; }
