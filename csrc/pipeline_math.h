// Elementwise formulas of the D2ACE pipeline, shared by the CPU and CUDA kernels so
// both backends evaluate exactly the same expressions (the Python definitions live in
// d2ace_ext/functional.py; comments name the paper's equations).
#pragma once

#include <cmath>

#if defined(__CUDACC__)
#define D2ACE_HD __host__ __device__ __forceinline__
#else
#define D2ACE_HD inline
#endif

namespace d2ace_ext {
namespace math {

// Precision-preserving overloads usable on host and device (log2f, not log2, for float).
D2ACE_HD float log2_of(float x) { return log2f(x); }
D2ACE_HD double log2_of(double x) { return log2(x); }
D2ACE_HD float expm1_of(float x) { return expm1f(x); }
D2ACE_HD double expm1_of(double x) { return expm1(x); }

// Eq. 1 in bits with 0·log 0 = 0; p is clamped to [0, 1] first and NaN stays NaN.
template <typename T>
D2ACE_HD T entropy_bits(T p) {
  if (p != p) return p;
  p = p < T(0) ? T(0) : (p > T(1) ? T(1) : p);
  const T r = T(1) - p;
  const T a = p > T(0) ? p * log2_of(p) : T(0);
  const T b = r > T(0) ? r * log2_of(r) : T(0);
  return -(a + b);
}

// The probability and per-label BCE of one logit against a 0/1 target, sharing one
// exponential: with e = exp(-|x|), σ(x) = 1/(1+e) or e/(1+e) and the BCE is
// max(∓x, 0) + log1p(e). Selecting the branch by the target (instead of PyTorch's
// (1 - y) x + ... form) keeps an infinite logit well defined, never NaN: a saturated
// right prediction has loss 0, a saturated wrong one inf.
struct Record {
  float probability;
  float loss;
};

// log(1 + e) for e in [0, 1] from one logf: log(u) e / (u - 1) with u = 1 + e cancels
// the rounding of u (Goldberg's trick), accurate to a few ulp; glibc's log1pf costs
// several times a logf and dominated the per-step recording.
D2ACE_HD float log1p_unit(float e) {
  const float u = 1.0f + e;
  return u == 1.0f ? e : logf(u) * (e / (u - 1.0f));
}

// |x| beyond which a logit is saturated: e^-|x| would fall below the smallest normal
// float (2^-126), so e is taken as 0, giving σ = 0 or 1 exactly and BCE = max(margin, 0).
// The same constant and test as d2ace_ext.functional.SATURATED_LOGIT, applied to the
// same float32 |x|, so saturated predictions are identical on every path.
constexpr float kSaturatedLogit = 87.33654f;
constexpr float kSmallestProbability = 1.17549435e-38f;  // 2^-126, FLT_MIN

D2ACE_HD Record from_logit(float x, bool positive) {
  const float a = fabsf(x);
  const float e = a > kSaturatedLogit ? 0.0f : expf(-a);
  const float tail = log1p_unit(e);
  Record r;
  r.probability = x >= 0.0f ? 1.0f / (1.0f + e) : e / (1.0f + e);
  const float margin = positive ? -x : x;
  r.loss = (margin > 0.0f ? margin : 0.0f) + tail;
  return r;
}

// The BCE of a probability, with PyTorch's clamp of each log at -100; a probability
// below the smallest normal float is taken as 0 (as the Python path does).
D2ACE_HD Record from_probability(float p, bool positive) {
  p = p < kSmallestProbability ? 0.0f : p;
  const float lg = positive ? logf(p) : log1pf(-p);
  Record r;
  r.probability = p;
  r.loss = -(lg > -100.0f ? lg : -100.0f);
  return r;
}

// The flip f of Eq. 4 between two consecutive records: of the 0/1 predictions
// (paper) or of the probabilities themselves (published code).
D2ACE_HD float flip_value(float now, float before, bool on_probability, float threshold) {
  if (on_probability) return fabsf(now - before);
  return (now > threshold) != (before > threshold) ? 1.0f : 0.0f;
}

// T(ℓ) of Eq. 5: ℓ (paper) or 1 - expm1(-ℓ) = 2 - e^(-ℓ) (published code).
template <typename T>
D2ACE_HD T loss_transform(T loss, bool two_minus_exp) {
  return two_minus_exp ? T(1) - expm1_of(-loss) : loss;
}

// Ring bookkeeping of one instance's window (Eq. 2): the newest slot, how many entries
// it holds, and whether it wrapped. Slot k is followed in time by k + 1 (mod n_t).
struct Ring {
  long long newest;
  long long held;
  bool full;
};

// k mod n_t for any integer k (k = -1 before the first push); one division, not two:
// k % n_t lies in (-n_t, n_t), so adding n_t once to a negative remainder suffices.
D2ACE_HD long long ring_slot(long long k, long long n_t) {
  const long long r = k % n_t;
  return r < 0 ? r + n_t : r;
}

D2ACE_HD Ring ring_of(long long pushes, long long n_t) {
  Ring r;
  r.newest = ring_slot(pushes - 1, n_t);
  r.held = pushes < n_t ? pushes : n_t;
  r.full = pushes >= n_t;
  return r;
}

// Whether the difference slot k -> k + 1 (mod n_t) joins two recorded entries.
D2ACE_HD bool ring_step_valid(const Ring& r, long long k) {
  return r.full ? k != r.newest : k + 1 < r.held;
}

// Where one visit reads and writes an instance's ring. A push appends a slot; a second
// visit within the same epoch (per-epoch windows) overwrites that epoch's entry and
// compares against the entry before it.
struct RecordSlots {
  long long previous;  // the slot the flip is measured against
  long long write;     // the slot the new probability goes to
  bool has_previous;   // whether `previous` holds a recorded entry
};

D2ACE_HD RecordSlots record_slots(long long pushes, bool push, long long n_t) {
  const long long newest = ring_slot(pushes - 1, n_t);
  RecordSlots s;
  s.previous = push ? newest : ring_slot(pushes - 2, n_t);
  s.write = push ? ring_slot(pushes, n_t) : newest;
  s.has_previous = push ? pushes >= 1 : pushes >= 2;
  return s;
}

}  // namespace math
}  // namespace d2ace_ext
