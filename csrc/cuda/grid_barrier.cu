// melnet_fast::grid_barrier_probe(counter, blocks, barriers): one cooperative launch of `blocks` blocks of
// kThreads threads that pass `barriers` grid-wide barriers (cooperative_groups' grid.sync(), the barrier of the
// persistent sampler, sample_tier_kernel.cuh) with nothing between them. Timed around the call (CUDA events), the
// slope over two barrier counts is the cost of one barrier on the device: what each of the sampler's dependent
// phases pays at least. counter (int32 [1], on the device) ends at blocks x barriers: the work cannot be elided.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cooperative_groups.h>
#include <torch/library.h>

namespace melnet_fast {
namespace {

namespace cg = cooperative_groups;

constexpr int kThreads = 256;  // the sampler's block size (sample_tier.cu)

__global__ void grid_barrier_kernel(int* counter, int barriers) {
  cg::grid_group grid = cg::this_grid();
  for (int i = 0; i < barriers; ++i) grid.sync();
  if (threadIdx.x == 0) atomicAdd(counter, barriers);
}

void grid_barrier_probe_cuda(const at::Tensor& counter, int64_t blocks, int64_t barriers) {
  TORCH_CHECK(counter.is_cuda() && counter.scalar_type() == at::kInt && counter.numel() == 1,
              "grid_barrier_probe: counter must be one int32 on a CUDA device, got ", counter.scalar_type(), " ",
              counter.sizes(), " on ", counter.device());
  TORCH_CHECK(barriers >= 0 && barriers < (int64_t(1) << 30), "grid_barrier_probe: barriers must be in [0, 2^30), got ",
              barriers);
  const c10::cuda::CUDAGuard guard(counter.device());
  const int device = counter.device().index();
  int coop = 0, sms = 0, per_sm = 0;
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&coop, cudaDevAttrCooperativeLaunch, device));
  TORCH_CHECK(coop, "grid_barrier_probe: device ", device, " has no cooperative launches");
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
  const void* kernel = reinterpret_cast<const void*>(&grid_barrier_kernel);
  C10_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, kThreads, 0));
  TORCH_CHECK(blocks >= 1 && blocks <= int64_t(sms) * per_sm, "grid_barrier_probe: blocks must be in [1, ",
              sms * per_sm, "] (all resident at once on ", sms, " SMs), got ", blocks);
  int* ptr = counter.data_ptr<int>();
  int n = static_cast<int>(barriers);
  void* args[] = {&ptr, &n};
  C10_CUDA_CHECK(cudaLaunchCooperativeKernel(kernel, dim3(static_cast<unsigned>(blocks)), dim3(kThreads), args, 0,
                                             c10::cuda::getCurrentCUDAStream().stream()));
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

}  // namespace

TORCH_LIBRARY_IMPL(melnet_fast, CUDA, m) { m.impl("grid_barrier_probe", &grid_barrier_probe_cuda); }

}  // namespace melnet_fast
