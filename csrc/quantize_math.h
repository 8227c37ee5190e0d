// The rank quantiser of Eqs. 13-14 and the mixture of Eq. 16, shared by the CPU and
// CUDA kernels. Its arithmetic follows d2ace_ext.functional.quantized_probabilities step
// by step, so that a weight lying exactly on a quantisation boundary lands in the same
// bin on every backend.
#pragma once

#include <cmath>

#include "pipeline_math.h"

namespace d2ace_ext {
namespace math {

// Weights whose span is at most this fraction of their magnitude count as all equal:
// the records are float32 (eps = 2^-23), so closer weights cannot be told apart from
// them. The same constant and test as d2ace_ext.functional.weights_tied.
constexpr double kTieTolerance = 1.0 / 65536.0;  // 2^-16

struct Quantizer {
  double low;
  double span;
  double n;
  double step;       // log(s) / n: the log-probability drop per quantisation index
  double top_index;  // the smallest index, held by the largest weight
  double index_min;
  bool uniform;      // weights tied (equal up to rounding), non-finite range, or s = 1
};

D2ACE_HD Quantizer make_quantizer(double low, double high, double pressure, long long n, long long index_min) {
  Quantizer qz;
  qz.low = low;
  qz.span = high - low;
  qz.n = static_cast<double>(n);
  qz.step = log(pressure) / qz.n;
  qz.index_min = static_cast<double>(index_min);
  qz.top_index = qz.index_min;
  const bool finite = qz.span - qz.span == 0.0;  // false for inf and NaN, on host and device
  const double magnitude = fabs(low) > fabs(high) ? fabs(low) : fabs(high);
  qz.uniform = !finite || !(qz.span > kTieTolerance * magnitude) || pressure == 1.0;
  return qz;
}

// Q = clamp(⌈(1 - (w - low)/span) n⌉, index_min, n) (Eq. 13, Δ = 1/n).
D2ACE_HD double quantization_index(const Quantizer& qz, double w) {
  const double normalised = (w - qz.low) / qz.span;
  const double index = ceil((1.0 - normalised) * qz.n);
  return index < qz.index_min ? qz.index_min : (index > qz.n ? qz.n : index);
}

// s^(-(Q - Q_top)/n), the softmax numerator of Eq. 14 shifted so the largest is 1.
D2ACE_HD double unnormalised_probability(const Quantizer& qz, double w) {
  if (qz.uniform) return 1.0;
  return exp(-quantization_index(qz, w) * qz.step + qz.top_index * qz.step);
}

// Eq. 16: P = p_beta P_U + (1 - p_beta) P_H, of each instance's two normalised
// probabilities (d2ace_ext.functional.mixture).
D2ACE_HD double mixture(double p_uncertainty, double p_hardness, double p_beta) {
  return p_beta * p_uncertainty + (1.0 - p_beta) * p_hardness;
}

}  // namespace math
}  // namespace d2ace_ext
