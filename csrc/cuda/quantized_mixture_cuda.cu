// CUDA kernels of Eqs. 13-14 and 16 in two launches (plus a memset): the unnormalised
// s^(-(Q - Q_top)/n) of both metrics with block-reduced sums, then normalisation and
// the mixture p_β P_U + (1 - p_β) P_H.
#include <ATen/Context.h>
#include <ATen/cuda/CUDAContext.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>

#include "../ops.h"
#include "../quantize_math.h"
#include "cuda_utils.cuh"

namespace d2ace_ext {
namespace {

__global__ void quantize_kernel(const double* __restrict__ weights, const double* __restrict__ weight_range,
                                int64_t n, double pressure, int64_t index_min, double* __restrict__ unnormalised,
                                double* __restrict__ totals) {
  __shared__ double shared[cuda::kWarps];
  const int m = blockIdx.y;
  const math::Quantizer quant =
      math::make_quantizer(weight_range[2 * m], weight_range[2 * m + 1], pressure, n, index_min);
  double total = 0.0;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    const double e = math::unnormalised_probability(quant, weights[m * n + i]);
    unnormalised[m * n + i] = e;
    total += e;
  }
  total = cuda::block_sum(total, shared);
  if (threadIdx.x == 0) atomicAdd(&totals[m], total);
}

__global__ void mixture_kernel(double* __restrict__ probabilities, const double* __restrict__ totals, int64_t n,
                               double p_beta, double* __restrict__ mixture) {
  const double inverse_u = 1.0 / totals[0], inverse_h = 1.0 / totals[1];
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    const double pu = probabilities[i] * inverse_u, ph = probabilities[n + i] * inverse_h;
    probabilities[i] = pu;
    probabilities[n + i] = ph;
    mixture[i] = math::mixture(pu, ph, p_beta);
  }
}

}  // namespace

MixtureOutputs quantized_mixture_cuda(const at::Tensor& weights, const at::Tensor& weight_range,
                                      double pressure, double p_beta, int64_t index_min) {
  check_quantized_mixture_inputs(weights, weight_range, pressure, p_beta, index_min);
  TORCH_CHECK_VALUE(weights.is_cuda(), "quantized_mixture_cuda: tensors must be CUDA tensors");
  // The two normalisers are float64 atomic sums in block order: their last bits vary.
  at::globalContext().alertNotDeterministic("quantized_mixture_cuda");
  const c10::cuda::CUDAGuard guard(weights.device());
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  const at::Tensor w = weights.contiguous(), range = weight_range.contiguous();
  const int64_t n = w.size(1);
  at::Tensor probabilities = at::empty({2, n}, w.options());
  at::Tensor mixture = at::empty({n}, w.options());
  at::Tensor totals = at::empty({2}, w.options());
  C10_CUDA_CHECK(cudaMemsetAsync(totals.mutable_data_ptr<double>(), 0, 2 * sizeof(double), stream));
  const int blocks = cuda::grid_for(n, cuda::kThreads, 4);
  quantize_kernel<<<dim3(blocks, 2), cuda::kThreads, 0, stream>>>(
      w.const_data_ptr<double>(), range.const_data_ptr<double>(), n, pressure, index_min,
      probabilities.mutable_data_ptr<double>(), totals.mutable_data_ptr<double>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  mixture_kernel<<<blocks, cuda::kThreads, 0, stream>>>(probabilities.mutable_data_ptr<double>(),
                                                        totals.const_data_ptr<double>(), n, p_beta,
                                                        mixture.mutable_data_ptr<double>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return {probabilities, mixture};
}

}  // namespace d2ace_ext
