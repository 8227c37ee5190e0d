// Branch-free float log2 and binary entropy for the CPU kernels' hot loops. glibc's
// log2f is a scalar call the compiler cannot vectorise; this Cephes-style logf (relative
// error ~1e-7, like a float32 library call) compiles to SIMD code, which makes the
// entropy of Eq. 1 several times cheaper on the per-epoch pass.
#pragma once

#include <bit>
#include <cfloat>
#include <cstdint>

#include "../pipeline_math.h"

// Hot row loops are compiled twice, for AVX2/FMA machines and for baseline x86-64, and
// the loader picks one (GCC function multiversioning): the AVX2 clone of the logit loop
// runs ~3x faster than the SSE2 one. -ffp-contract=off (setup.py) keeps FMA contraction
// out, so both clones give bitwise identical results.
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 12 && defined(__x86_64__) && defined(__linux__)
#define D2ACE_SIMD_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define D2ACE_SIMD_CLONES
#endif

namespace d2ace_ext {
namespace fastmath {

// Float comparisons below are done on the bit patterns, whose integer order matches
// the float order for non-negative values: GCC vectorises integer selects but not
// float min/max (NaN rules) or float-conditioned selects.
constexpr std::int32_t kOneBits = 0x3f800000;     // 1.0f
constexpr std::int32_t kFltMinBits = 0x00800000;  // FLT_MIN

// p clamped to [0, 1]; negative values (sign bit set) become +0.
inline float clamp_unit(float p) {
  std::int32_t bits = std::bit_cast<std::int32_t>(p);
  bits = bits < 0 ? 0 : bits;
  bits = bits > kOneBits ? kOneBits : bits;
  return std::bit_cast<float>(bits);
}

// log2(max(x, FLT_MIN)) for x >= 0.
inline float log2_positive(float x) {
  std::int32_t bits = std::bit_cast<std::int32_t>(x);
  bits = bits < kFltMinBits ? kFltMinBits : bits;
  float exponent = static_cast<float>(((bits >> 23) & 0xff) - 126);
  bits = (bits & 0x007fffff) | 0x3f000000;  // mantissa m in [0.5, 1)
  // Below √½ use 2m and exponent - 1, keeping t = m - 1 within [-0.29, 0.41]. Integer
  // masks instead of a float select: GCC does not if-convert the latter in this loop.
  const std::int32_t low = -static_cast<std::int32_t>(std::bit_cast<float>(bits) < 0.70710678f);
  bits += low & 0x00800000;
  exponent += static_cast<float>(low);
  const float t = std::bit_cast<float>(bits) - 1.0f;
  const float z = t * t;
  float y = 7.0376836292e-2f;
  y = y * t - 1.1514610310e-1f;
  y = y * t + 1.1676998740e-1f;
  y = y * t - 1.2420140846e-1f;
  y = y * t + 1.4249322787e-1f;
  y = y * t - 1.6668057665e-1f;
  y = y * t + 2.0000714765e-1f;
  y = y * t - 2.4999993993e-1f;
  y = y * t + 3.3333331174e-1f;
  const float log_m = t + (y * t * z - 0.5f * z);  // natural log of the mantissa
  return log_m * 1.44269504088896341f + exponent;
}

// -(p log2 p + (1-p) log2 (1-p)) for p already clamped to [0, 1]. log2 sees arguments
// raised to FLT_MIN, so p = 0 gives exactly 0 and a subnormal p a term below 2e-36.
inline float entropy_bits_clamped(float p) {
  const float r = 1.0f - p;
  return -(p * log2_positive(p) + r * log2_positive(r));
}

// Float select written on bit patterns (mask all-ones or zero), which GCC vectorises.
inline float select_bits(std::int32_t mask, float if_set, float if_clear) {
  return std::bit_cast<float>((std::bit_cast<std::int32_t>(if_set) & mask) |
                              (std::bit_cast<std::int32_t>(if_clear) & ~mask));
}

// exp(-a) for a >= 0 (a = +inf allowed), and exactly 0 for a saturated logit
// (a > math::kSaturatedLogit, where e^-a would be below the smallest normal float).
// Cephes expf: 2^n e^r with |r| <= ln2/2 and a degree-6 polynomial, ~1 ulp; the
// argument is capped at the saturation point so the result of the bit arithmetic stays normal.
inline float exp_negative(float a) {
  std::int32_t bits = std::bit_cast<std::int32_t>(a);
  // all ones when saturated; compared as bit patterns (a >= 0), which GCC vectorises
  const std::int32_t saturated = -static_cast<std::int32_t>(bits > std::bit_cast<std::int32_t>(math::kSaturatedLogit));
  constexpr std::int32_t kCapBits = std::bit_cast<std::int32_t>(math::kSaturatedLogit);
  bits = bits > kCapBits ? kCapBits : bits;  // min(a, 87.33654f): 2^n stays >= 2^-126 below
  const float z = -std::bit_cast<float>(bits);
  const std::int32_t n = static_cast<std::int32_t>(z * 1.44269504088896341f - 0.5f);  // round, z <= 0
  const float nf = static_cast<float>(n);
  const float r = (z - nf * 0.693359375f) + nf * 2.12194440e-4f;
  float y = 1.9875691500e-4f;
  y = y * r + 1.3981999507e-3f;
  y = y * r + 8.3334519073e-3f;
  y = y * r + 4.1665795894e-2f;
  y = y * r + 1.6666665459e-1f;
  y = y * r + 5.0000001201e-1f;
  y = y * r * r + r + 1.0f;
  return std::bit_cast<float>((std::bit_cast<std::int32_t>(y) + (n << 23)) & ~saturated);
}

// σ(x) and the per-label BCE of logits x against 0/1 targets y over one row, the same
// formulas as math::from_logit (pipeline_math.h) in a loop GCC vectorises.
inline void logit_row(const float* __restrict x, const float* __restrict y, std::int64_t q,
                      float* __restrict probability, float* __restrict loss) {
  for (std::int64_t j = 0; j < q; ++j) {
    const std::int32_t xb = std::bit_cast<std::int32_t>(x[j]);
    const float e = exp_negative(std::bit_cast<float>(xb & 0x7fffffff));  // e^-|x|
    const float u = 1.0f + e;
    const float d = u - 1.0f;  // exact; 0 when e is below half an ulp of 1
    // log1p(e) = log(u) e / (u - 1), or e itself when u rounds to 1
    const float tail = select_bits(-static_cast<std::int32_t>(d > 0.0f),
                                   log2_positive(u) * 0.69314718055994531f * (e / d), e);
    const std::int32_t negative = xb >> 31;                              // all ones when x < 0
    probability[j] = select_bits(negative, e, 1.0f) / u;
    // margin = -x for a positive label, x for a negative one; max(margin, 0) via its sign bit
    const float margin = y[j] != 0.0f ? -x[j] : x[j];
    const std::int32_t mb = std::bit_cast<std::int32_t>(margin);
    loss[j] = std::bit_cast<float>(mb & ~(mb >> 31)) + tail;
  }
}

}  // namespace fastmath
}  // namespace d2ace_ext
