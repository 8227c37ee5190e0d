// Every formula of the D2ACE pipeline that the CPU and CUDA kernels share, written once:
// changing an equation means d2ace_ext/functional.py (the Python definition) and this
// file. Comments name the paper's equations.
//
// A formula that evaluates exp or log takes the functions as a template parameter
// `M`: `LibraryMath` below (the C library's functions; CUDA evaluates them by libdevice)
// or, in the CPU kernels' hot loops, `fastmath::VectorMath` (cpu/fast_math_cpu.h:
// branch-free polynomials and bit selects that GCC vectorises). The formula, its
// operation order and so its rounding given those functions, is the same for both.
#pragma once

#include <cmath>

#if defined(__CUDACC__)
#define D2ACE_HD __host__ __device__ __forceinline__
#else
#define D2ACE_HD inline
#endif

namespace d2ace_ext {
namespace math {

// |x| beyond which a logit is saturated: e^-|x| would fall below the smallest normal
// float (2^-126), so e is taken as 0, giving σ = 0 or 1 exactly and BCE = max(margin, 0).
// The same constant and test as d2ace_ext.functional.SATURATED_LOGIT, applied to the
// same float32 |x|, so saturated predictions are identical on every path.
constexpr float kSaturatedLogit = 87.33654f;
constexpr float kSmallestProbability = 1.17549435e-38f;  // 2^-126, FLT_MIN
// What an instance never visited reads as (d2ace_ext.visits): p = 0.5, one bit of entropy.
constexpr float kUnseenProbability = 0.5f;
constexpr float kUnseenEntropyBits = 1.0f;
// The published code's ε of the row normalisation of C (d2ace_ext.functional.ROW_NORMALISE_EPS).
constexpr double kRowNormaliseEps = 1e-8;

// Precision-preserving overloads usable on host and device (log2f, not log2, for float).
D2ACE_HD float log2_of(float x) { return log2f(x); }
D2ACE_HD double log2_of(double x) { return log2(x); }

// The C library's functions, on host and device, in the form the formulas below call.
struct LibraryMath {
  // p clamped to [0, 1].
  template <typename T>
  static D2ACE_HD T clamp_unit(T p) {
    return p < T(0) ? T(0) : (p > T(1) ? T(1) : p);
  }
  // x log2 x with 0 log 0 = 0.
  template <typename T>
  static D2ACE_HD T x_log2_x(T x) {
    return x > T(0) ? x * log2_of(x) : T(0);
  }
  // e^-a for a >= 0, exactly 0 for a saturated logit.
  static D2ACE_HD float exp_negative(float a) { return a > kSaturatedLogit ? 0.0f : expf(-a); }
  static D2ACE_HD float log(float x) { return logf(x); }
  static D2ACE_HD bool negative(float x) { return !(x >= 0.0f); }
  static D2ACE_HD float select(bool condition, float if_true, float if_false) { return condition ? if_true : if_false; }
  // max(x, 0), +0 for -0.
  static D2ACE_HD float positive_part(float x) { return x > 0.0f ? x : 0.0f; }
  static D2ACE_HD float one_if_differ(bool a, bool b) { return a != b ? 1.0f : 0.0f; }
};

// ---------------------------------------------------------------------------------------
// Eq. 1: binary entropy in bits.
// ---------------------------------------------------------------------------------------

// e(p) = -(p log2 p + (1 - p) log2 (1 - p)) for p already in [0, 1], 0 log 0 = 0.
template <class M, typename T>
D2ACE_HD T entropy_bits_of_unit(T p) {
  return -(M::x_log2_x(p) + M::x_log2_x(T(1) - p));
}

// e(p) with p clamped to [0, 1] first; NaN stays NaN.
template <typename T, class M = LibraryMath>
D2ACE_HD T entropy_bits(T p) {
  if (p != p) return p;
  return entropy_bits_of_unit<M>(M::clamp_unit(p));
}

// ---------------------------------------------------------------------------------------
// A training step's record: probability and per-label BCE of one output.
// ---------------------------------------------------------------------------------------

struct Record {
  float probability;
  float loss;
};

// σ(x) and the BCE of logit x against a 0/1 target, sharing one exponential: with
// e = e^-|x|, σ(x) = 1/(1+e) or e/(1+e) and the BCE is max(∓x, 0) + log1p(e). Selecting
// the branch by the target (instead of PyTorch's (1 - y) x + ... form) keeps an infinite
// logit well defined, never NaN: a saturated right prediction has loss 0, a wrong one inf.
// log1p(e) for e in [0, 1] from one log: log(u) e / (u - 1) with u = 1 + e cancels the
// rounding of u (Goldberg's trick), accurate to a few ulp; e itself when u rounds to 1.
template <class M = LibraryMath>
D2ACE_HD Record from_logit(float x, bool positive) {
  const float e = M::exp_negative(fabsf(x));
  const float u = 1.0f + e;
  const float d = u - 1.0f;  // exact; 0 when e is below half an ulp of 1
  const float tail = M::select(d > 0.0f, M::log(u) * (e / d), e);
  Record r;
  r.probability = M::select(M::negative(x), e, 1.0f) / u;
  const float margin = positive ? -x : x;
  r.loss = M::positive_part(margin) + tail;
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

// ---------------------------------------------------------------------------------------
// Eq. 4: flips and their exponential moving average.
// ---------------------------------------------------------------------------------------

// The flip f between two consecutive records: of the 0/1 predictions (paper) or of the
// probabilities themselves (published code).
template <class M = LibraryMath>
D2ACE_HD float flip_value(float now, float before, bool on_probability, float threshold) {
  if (on_probability) return fabsf(now - before);
  return M::one_if_differ(now > threshold, before > threshold);
}

// f̄ = λ2 f + (1 - λ2) f̄_before, with take = λ2 and keep = 1 - λ2 rounded to float once.
D2ACE_HD float flip_average(float flip, float before, float take, float keep) { return take * flip + keep * before; }

// ---------------------------------------------------------------------------------------
// Eqs. 2, 3, 5: the per-(instance, label) metrics U and H.
// ---------------------------------------------------------------------------------------

// (1 - λ1) / (m - 1): the weight of the sum of |Δp| over the m - 1 differences of the m
// held entries (Eq. 2's mean, inside Eq. 3); 0 with fewer than two entries.
D2ACE_HD float fluctuation_weight(float lambda1, long long held) {
  return held > 1 ? (1.0f - lambda1) / static_cast<float>(held - 1) : 0.0f;
}

// Eq. 3's second term (1 - λ1) d, with d = fluctuation_sum / (m - 1).
D2ACE_HD float weighted_fluctuation(float fluctuation_sum, float weight_of_fluctuation) {
  return weight_of_fluctuation * fluctuation_sum;
}

// Eq. 3 from its second term: u = λ1 e + (1 - λ1) d. Both products are rounded before the
// sum (no FMA contraction), so taking the second from weighted_fluctuation earlier, per
// row, rounds exactly as the whole formula below.
D2ACE_HD float uncertainty_of_weighted(float entropy, float weighted_fluctuation, float lambda1) {
  return lambda1 * entropy + weighted_fluctuation;
}

// Eq. 3: u = λ1 e + (1 - λ1) d, with d = fluctuation_sum / (m - 1).
D2ACE_HD float uncertainty(float entropy, float fluctuation_sum, float lambda1, float weight_of_fluctuation) {
  return uncertainty_of_weighted(entropy, weighted_fluctuation(fluctuation_sum, weight_of_fluctuation), lambda1);
}

// T(ℓ) of Eq. 5: ℓ (paper) or 1 - expm1(-ℓ) = 2 - e^(-ℓ) (published code), evaluated as
// 2 - e^(-ℓ) by M's exp, which the CPU vectorises (a BCE is >= 0, exp_negative's domain).
// Beside a result near 1 or 2 the two forms differ by float rounding only.
template <typename M>
D2ACE_HD float loss_transform(float loss, bool two_minus_exp) {
  return two_minus_exp ? 2.0f - M::exp_negative(loss) : loss;
}

// Eq. 5: h = T(ℓ) (1 - f̄).
template <typename M = LibraryMath>
D2ACE_HD float hardness(float loss, float flip_average, bool two_minus_exp) {
  return loss_transform<M>(loss, two_minus_exp) * (1.0f - flip_average);
}

// ---------------------------------------------------------------------------------------
// Eqs. 6-12: label weights, the masked correlation, δ and φ.
// ---------------------------------------------------------------------------------------

// Eqs. 6-7: v = exp((μ + σ) / 2), population std, from the column's sums shifted by
// `shift` (Σ(a - shift), Σ(a - shift)² over n rows): the shift keeps an almost constant
// column from cancelling.
D2ACE_HD double label_weight(double shift, double shifted_sum, double shifted_squares, long long n) {
  const double rows = static_cast<double>(n);
  const double mean_shifted = shifted_sum / rows;
  const double variance = shifted_squares / rows - mean_shifted * mean_shifted;
  return exp(0.5 * (shift + mean_shifted + sqrt(variance > 0.0 ? variance : 0.0)));
}

// Eq. 9's column norm over the nonzeros of Y, from the masked Gram diagonal G_jj.
D2ACE_HD double column_norm(double gram_diagonal, double norm_eps) { return sqrt(gram_diagonal) + norm_eps; }

// Eq. 9: C_jk = G_jk / (N_j N_k), 0/0 := 0 for a column without mass.
D2ACE_HD double correlation(double gram, double norm_j, double norm_k) {
  const double d = norm_j * norm_k;
  return d > 0.0 ? gram / d : 0.0;
}

// The published code's row normalisation of C: 1 / (Σ_k C_jk + ε), or 1 without it.
D2ACE_HD double row_scale(double row_sum, bool row_normalize) {
  return row_normalize ? 1.0 / (row_sum + kRowNormaliseEps) : 1.0;
}

// The per-label factor of φ (Eq. 11): the row scale, times v_j where the published code
// weights φ by the label weights.
D2ACE_HD double phi_factor(double scale, double label_weight, bool label_weights_in_phi) {
  return scale * (label_weights_in_phi ? label_weight : 1.0);
}

// One term of φ_i = Σ_{j ∈ Y_i} A_ij factor_j Σ_{k ∈ Z_i} C_jk (Eqs. 10-11): `correlation`
// is one C_jk or their sum over k, as the backend groups them.
D2ACE_HD double phi_term(float metric, double correlation_of_context, double factor) {
  return metric * correlation_of_context * factor;
}

// ---------------------------------------------------------------------------------------
// Eq. 2's ring: where each instance's window entries live.
// ---------------------------------------------------------------------------------------

// Ring bookkeeping of one instance's window: the newest slot, how many entries it
// holds, and whether it wrapped. Slot k is followed in time by k + 1 (mod n_t).
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
