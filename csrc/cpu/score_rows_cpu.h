// The vectorised loops of the CPU scoring (score_visits_cpu.cpp): each evaluates one
// formula of pipeline_math.h over a row or a span of rows. Restrict pointers, one loop
// per mode and VectorMath's exp and log, so GCC vectorises each; D2ACE_SIMD_CLONES
// compiles them for AVX-512, AVX2 and baseline x86-64.
//
// Where the operands are contiguous across rows (the (n, q) loss, flip EMA and
// workspace), a loop runs over a whole block of rows at once: at q = 101 a per-row loop
// leaves 5 of every 101 values to a scalar tail, which for the two logs of the entropy
// cost as much as the 96 vectorised ones (perf, AMD EPYC).
#pragma once

#include <cmath>
#include <cstdint>

#include "../pipeline_math.h"
#include "fast_math_cpu.h"

namespace d2ace_ext {
namespace score_rows {

// Accumulators of a float64 dot product: independent partial sums so the additions
// do not wait on each other (two AVX-512 registers).
constexpr int64_t kDotLanes = 16;

// Σ|Δp| over the valid differences of one instance's ring window (Eq. 2), times the
// weight (1 - λ1)/(m - 1) of Eq. 3: window (n_t, q), out (q,).
D2ACE_SIMD_CLONES inline void weighted_fluctuation_row(const float* __restrict window, const math::Ring& ring,
                                                       int64_t n_t, int64_t q, float weight,
                                                       float* __restrict out) {
  for (int64_t j = 0; j < q; ++j) out[j] = 0.0f;
  for (int64_t k = 0; k < n_t; ++k) {
    if (!math::ring_step_valid(ring, k)) continue;
    const float* now = window + k * q;
    const float* next = window + ((k + 1) % n_t) * q;
    for (int64_t j = 0; j < q; ++j) out[j] += std::fabs(next[j] - now[j]);
  }
  for (int64_t j = 0; j < q; ++j) out[j] = math::weighted_fluctuation(out[j], weight);
}

// p clamped to [0, 1] over one row: latest, out (q,).
D2ACE_SIMD_CLONES inline void clamp_row(const float* __restrict latest, int64_t q, float* __restrict out) {
  for (int64_t j = 0; j < q; ++j) out[j] = fastmath::VectorMath::clamp_unit(latest[j]);
}

// u = λ1 e(p) + weighted fluctuation (Eq. 3) over `count` values (a block of rows).
D2ACE_SIMD_CLONES inline void uncertainty_span(const float* __restrict clamped,
                                               const float* __restrict weighted_fluctuation, float lambda1,
                                               int64_t count, float* __restrict uncertainty) {
  for (int64_t e = 0; e < count; ++e) {
    const float entropy = math::entropy_bits_of_unit<fastmath::VectorMath>(clamped[e]);
    uncertainty[e] = math::uncertainty_of_weighted(entropy, weighted_fluctuation[e], lambda1);
  }
}

// h = T(ℓ) (1 - f̄) over `count` values (Eq. 5), one loop per transform.
D2ACE_SIMD_CLONES inline void hardness_span(const float* __restrict loss, const float* __restrict flip_average,
                                            bool two_minus_exp, int64_t count, float* __restrict hardness) {
  if (two_minus_exp) {
    for (int64_t e = 0; e < count; ++e) {
      hardness[e] = math::hardness<fastmath::VectorMath>(loss[e], flip_average[e], true);
    }
  } else {
    for (int64_t e = 0; e < count; ++e) {
      hardness[e] = math::hardness<fastmath::VectorMath>(loss[e], flip_average[e], false);
    }
  }
}

// One row's metric a (q,) into its column accumulators: Σ(a - shift) and Σ(a - shift)²
// in float64 (Eqs. 6-7, shifted so an almost constant column does not cancel).
D2ACE_SIMD_CLONES inline void add_row_to_sums(const float* __restrict a, const double* __restrict shift, int64_t q,
                                              double* __restrict sum, double* __restrict squares) {
  for (int64_t j = 0; j < q; ++j) {
    const double d = a[j] - shift[j];
    sum[j] += d;
    squares[j] += d * d;
  }
}

// Σ_j a_j v_j in float64 over q values: kDotLanes partial sums, added pairwise at the
// end, and the q mod kDotLanes values of the tail added last.
D2ACE_SIMD_CLONES inline double weighted_row_sum(const float* __restrict a, const double* __restrict v, int64_t q) {
  double lanes[kDotLanes] = {};
  int64_t j = 0;
  for (; j + kDotLanes <= q; j += kDotLanes) {
    for (int64_t l = 0; l < kDotLanes; ++l) lanes[l] += a[j + l] * v[j + l];
  }
  double tail = 0.0;
  for (; j < q; ++j) tail += a[j] * v[j];
  static_assert(kDotLanes == 16, "the pairwise sum below adds 16 lanes");
  for (int64_t l = 0; l < 8; ++l) lanes[l] += lanes[l + 8];
  for (int64_t l = 0; l < 4; ++l) lanes[l] += lanes[l + 4];
  return ((lanes[0] + lanes[2]) + (lanes[1] + lanes[3])) + tail;
}

}  // namespace score_rows
}  // namespace d2ace_ext
