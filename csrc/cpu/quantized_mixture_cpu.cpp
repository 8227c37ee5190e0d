// CPU kernel of Eqs. 13-14 (rank quantisation, P ∝ s^(-Q/n)) for both metrics and the
// mixture of Eq. 16.
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>

#include <cmath>
#include <vector>

#include "../ops.h"
#include "../quantize_math.h"

namespace d2ace_ext {

MixtureOutputs quantized_mixture_cpu(const at::Tensor& weights, const at::Tensor& weight_range,
                                     double pressure, double p_beta, int64_t index_min) {
  check_quantized_mixture_inputs(weights, weight_range, pressure, p_beta, index_min);
  TORCH_CHECK_VALUE(weights.device().is_cpu(), "quantized_mixture_cpu: tensors must be on the CPU");
  const at::Tensor w_c = weights.contiguous(), r_c = weight_range.contiguous();
  const int64_t n = w_c.size(1);
  const double* w = w_c.const_data_ptr<double>();
  const double* range = r_c.const_data_ptr<double>();
  at::Tensor probabilities = at::empty({2, n}, w_c.options());
  at::Tensor mixture = at::empty({n}, w_c.options());
  double* p = probabilities.mutable_data_ptr<double>();
  double* mix = mixture.mutable_data_ptr<double>();

  // One chunk per 64k instances at most one per thread: below that the work is a fraction
  // of a millisecond, less than what a parallel region costs when another process holds a core.
  const int64_t chunks = std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), n >> 16));
  for (int64_t m = 0; m < 2; ++m) {
    const math::Quantizer quant = math::make_quantizer(range[2 * m], range[2 * m + 1], pressure, n, index_min);
    std::vector<double> partial(chunks, 0.0);
    at::parallel_for(0, chunks, 1, [&](int64_t c_begin, int64_t c_end) {
      for (int64_t c = c_begin; c < c_end; ++c) {
        double total = 0.0;
        for (int64_t i = n * c / chunks; i < n * (c + 1) / chunks; ++i) {
          const double e = math::unnormalised_probability(quant, w[m * n + i]);
          p[m * n + i] = e;
          total += e;
        }
        partial[c] = total;
      }
    });
    double total = 0.0;
    for (double part : partial) total += part;
    const double inverse = 1.0 / total;
    at::parallel_for(0, n, 1 << 15, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) p[m * n + i] *= inverse;
    });
  }
  at::parallel_for(0, n, 1 << 15, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) mix[i] = math::mixture(p[i], p[n + i], p_beta);
  });
  return {probabilities, mixture};
}

}  // namespace d2ace_ext
