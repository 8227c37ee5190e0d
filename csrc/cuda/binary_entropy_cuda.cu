// CUDA kernel of Eq. 1, launched on the current stream under a device guard.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/cuda/CUDAContext.h>
#include <ATen/ops/empty_like.h>
#include <c10/cuda/CUDAGuard.h>

#include "../ops.h"
#include "../pipeline_math.h"

namespace d2ace_ext {
namespace {

template <typename scalar_t>
__global__ void binary_entropy_kernel(const scalar_t* __restrict__ in,
                                      scalar_t* __restrict__ out, int64_t numel) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t stride = static_cast<int64_t>(blockDim.x) * gridDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < numel;
       i += stride) {
    out[i] = static_cast<scalar_t>(math::entropy_bits<acc_t>(static_cast<acc_t>(in[i])));
  }
}

}  // namespace

at::Tensor binary_entropy_cuda(const at::Tensor& probs) {
  check_binary_entropy_input(probs);
  TORCH_CHECK_VALUE(probs.is_cuda(), "binary_entropy_cuda: probs must be a CUDA tensor");
  const c10::cuda::CUDAGuard guard(probs.device());
  const at::Tensor input = probs.contiguous();
  at::Tensor out = at::empty_like(input);
  const int64_t numel = input.numel();
  if (numel == 0) {
    return out;
  }
  constexpr int threads = 256;
  const int64_t wanted = (numel + threads - 1) / threads;
  const int blocks = static_cast<int>(std::min<int64_t>(wanted, 65535));
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, input.scalar_type(), "binary_entropy_cuda", [&] {
        binary_entropy_kernel<scalar_t><<<blocks, threads, 0, stream>>>(
            input.const_data_ptr<scalar_t>(), out.mutable_data_ptr<scalar_t>(), numel);
      });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

}  // namespace d2ace_ext
