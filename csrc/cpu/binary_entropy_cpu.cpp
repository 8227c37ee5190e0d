// CPU kernel of Eq. 1: e = -(p log2 p + (1 - p) log2 (1 - p)).
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty_like.h>

#include "../ops.h"
#include "../pipeline_math.h"

namespace d2ace_ext {

at::Tensor binary_entropy_cpu(const at::Tensor& probs) {
  check_binary_entropy_input(probs);
  TORCH_CHECK_VALUE(probs.device().is_cpu(), "binary_entropy_cpu: probs must be on the CPU");
  const at::Tensor input = probs.contiguous();
  at::Tensor out = at::empty_like(input);
  const int64_t numel = input.numel();
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, input.scalar_type(), "binary_entropy_cpu", [&] {
        using acc_t = at::opmath_type<scalar_t>;
        const scalar_t* in = input.const_data_ptr<scalar_t>();
        scalar_t* res = out.mutable_data_ptr<scalar_t>();
        at::parallel_for(0, numel, 1 << 14, [&](int64_t begin, int64_t end) {
          for (int64_t i = begin; i < end; ++i) {
            res[i] = static_cast<scalar_t>(math::entropy_bits<acc_t>(static_cast<acc_t>(in[i])));
          }
        });
      });
  return out;
}

}  // namespace d2ace_ext
