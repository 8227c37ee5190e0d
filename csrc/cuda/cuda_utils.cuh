// Launch helpers and reductions shared by the CUDA kernels.
#pragma once

#include <ATen/cuda/CUDAContext.h>

#include <algorithm>

namespace d2ace_ext {
namespace cuda {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;

// A grid of at most `per_sm` blocks per multiprocessor, enough for `work` items.
inline int grid_for(int64_t work, int64_t items_per_block, int per_sm = 8) {
  const int sms = at::cuda::getCurrentDeviceProperties()->multiProcessorCount;
  const int64_t wanted = (work + items_per_block - 1) / items_per_block;
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(wanted, static_cast<int64_t>(sms) * per_sm)));
}

__device__ __forceinline__ double warp_sum(double v) {
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_down_sync(0xffffffffu, v, offset);
  return v;
}

__device__ __forceinline__ double warp_min(double v) {
  for (int offset = 16; offset > 0; offset >>= 1) v = fmin(v, __shfl_down_sync(0xffffffffu, v, offset));
  return v;
}

__device__ __forceinline__ double warp_max(double v) {
  for (int offset = 16; offset > 0; offset >>= 1) v = fmax(v, __shfl_down_sync(0xffffffffu, v, offset));
  return v;
}

// Sum over the block (kThreads threads); the result is valid in thread 0.
__device__ __forceinline__ double block_sum(double v, double* shared /* kWarps */) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  v = warp_sum(v);
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  double total = 0.0;
  if (threadIdx.x == 0) {
    for (int w = 0; w < kWarps; ++w) total += shared[w];
  }
  __syncthreads();
  return total;
}

// min / max of doubles in global memory through compare-and-swap. The slots start as NaN
// (bytes 0xff), which fmin / fmax ignore, so no +-inf initialisation kernel is needed.
template <bool kMax>
__device__ __forceinline__ void atomic_extreme_double(double* address, double value) {
  unsigned long long* bits = reinterpret_cast<unsigned long long*>(address);
  unsigned long long seen = *bits, assumed;
  do {
    assumed = seen;
    const double current = __longlong_as_double(static_cast<long long>(assumed));
    const double updated = kMax ? fmax(current, value) : fmin(current, value);
    seen = atomicCAS(bits, assumed, static_cast<unsigned long long>(__double_as_longlong(updated)));
  } while (seen != assumed);
}

__device__ __forceinline__ void atomic_min_double(double* address, double value) {
  atomic_extreme_double<false>(address, value);
}

__device__ __forceinline__ void atomic_max_double(double* address, double value) {
  atomic_extreme_double<true>(address, value);
}

}  // namespace cuda
}  // namespace d2ace_ext
