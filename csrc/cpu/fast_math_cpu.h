// Branch-free float log2 and exp for the CPU kernels' hot loops. glibc's log2f and expf
// are scalar calls the compiler cannot vectorise; these Cephes-style versions (relative
// error ~1e-7, like a float32 library call) compile to SIMD code, which makes Eq. 1 and
// the logit record several times cheaper. They are the CPU's `M` of the formulas in
// pipeline_math.h (VectorMath below); the formulas themselves live there only.
#pragma once

#include <bit>
#include <cfloat>
#include <cstdint>

#include "../pipeline_math.h"

// Hot row loops are compiled three times, for AVX-512, AVX2/FMA and baseline x86-64
// machines, and the loader picks one (GCC function multiversioning): the AVX2 clone of
// the logit loop runs ~3x faster than the SSE2 one, the AVX-512 clone ~12 % faster again
// (AMD EPYC, 2 cores). -ffp-contract=off (setup.py) keeps FMA contraction out, so every
// clone gives bitwise identical results.
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 12 && defined(__x86_64__) && defined(__linux__)
#define D2ACE_SIMD_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
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

// The primitive functions of the formulas in pipeline_math.h, in the branch-free form
// GCC vectorises: a CPU hot loop calls a math:: formula with M = VectorMath. -ffp-contract=off
// (setup.py) keeps the arithmetic in the formula's order, so every clone rounds alike.
struct VectorMath {
  static float clamp_unit(float p) { return fastmath::clamp_unit(p); }
  // log2 sees arguments raised to FLT_MIN, so x = 0 gives exactly 0 and a subnormal x a
  // term below 2e-36.
  static float x_log2_x(float x) { return x * log2_positive(x); }
  static float exp_negative(float a) { return fastmath::exp_negative(a); }
  static float log(float x) { return log2_positive(x) * 0.69314718055994531f; }
  static bool negative(float x) { return std::bit_cast<std::int32_t>(x) < 0; }  // the sign bit
  static float select(bool condition, float if_true, float if_false) {
    return select_bits(-static_cast<std::int32_t>(condition), if_true, if_false);
  }
  // max(x, 0) through the sign bit (GCC does not vectorise a float max: NaN rules).
  static float positive_part(float x) {
    const std::int32_t bits = std::bit_cast<std::int32_t>(x);
    return std::bit_cast<float>(bits & ~(bits >> 31));
  }
  // An integer xor of the two masks: GCC does not vectorise `a != b ? 1.0f : 0.0f` here.
  static float one_if_differ(bool a, bool b) {
    return select_bits(-static_cast<std::int32_t>(a) ^ -static_cast<std::int32_t>(b), 1.0f, 0.0f);
  }
};

}  // namespace fastmath
}  // namespace d2ace_ext
