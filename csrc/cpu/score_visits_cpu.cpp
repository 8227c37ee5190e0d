// CPU kernel of the per-epoch scoring (Eqs. 3, 5-12) for both metrics at once.
//
// Pass 1 (rows in parallel): U and H of every (i, j) from the float32 state, column sums
// for Eqs. 6-7 (shifted by row 0 so the variance does not cancel), and the raw masked
// Gram G = Mᵀ M over the co-occurring positives of each row (Σ_i |Y_i|² pairs).
// Pass 2 (q² work): v, column norms √G_jj + ε, C = D⁻¹ G D⁻¹, row-normalisation scale.
// Pass 3 (rows in parallel): δ_i = Σ_j A_ij v_j and φ_i = Σ_{j ∈ Y_i} A_ij Σ_{k ∈ Z_i} C_jk
// (times the options' factors); the range of w = δ + φ for the quantiser.
// Per-chunk partial sums are merged in chunk order, so results do not depend on timing.
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "../ops.h"
#include "../pipeline_math.h"
#include "fast_math_cpu.h"

namespace d2ace_ext {
namespace {

constexpr double kRowNormaliseEps = 1e-8;      // the published code's constant
constexpr int64_t kMaxGramBytesPerChunk = 64 << 20;

struct Options {
  float lambda1;
  bool two_minus_exp;
};

// u = λ1 e(p) + w_d Σ|Δp| over one row (Eq. 3). Written as two loops over restrict
// pointers because GCC vectorises each (fast_math_cpu.h) but not the clamp and the
// entropy fused into one; `clamped` is q floats of scratch.
D2ACE_SIMD_CLONES void uncertainty_row(const float* __restrict latest, const float* __restrict fluctuation_sum, float lambda1,
                     float fluctuation_weight, int64_t q, float* __restrict clamped, float* __restrict u_out) {
  for (int64_t j = 0; j < q; ++j) clamped[j] = fastmath::clamp_unit(latest[j]);
  for (int64_t j = 0; j < q; ++j) {
    u_out[j] = lambda1 * fastmath::entropy_bits_clamped(clamped[j]) + fluctuation_weight * fluctuation_sum[j];
  }
}

// U (Eq. 3) and H (Eq. 5) of row i into u_out, h_out (q,); scratch holds 2q floats.
D2ACE_SIMD_CLONES void metric_row(const float* window, int64_t pushes, const float* loss, const float* flip, int64_t n_t,
                int64_t q, const Options& opt, float* u_out, float* h_out, float* scratch) {
  const math::Ring ring = math::ring_of(pushes, n_t);
  std::fill(scratch, scratch + q, 0.0f);
  for (int64_t k = 0; k < n_t; ++k) {
    if (!math::ring_step_valid(ring, k)) continue;
    const float* now = window + k * q;
    const float* next = window + ((k + 1) % n_t) * q;
    for (int64_t j = 0; j < q; ++j) scratch[j] += std::fabs(next[j] - now[j]);
  }
  const float steps = static_cast<float>(ring.held > 1 ? ring.held - 1 : 1);
  const float fluctuation_weight = ring.held > 1 ? (1.0f - opt.lambda1) / steps : 0.0f;
  const float* latest = window + ring.newest * q;
  if (pushes > 0) {
    uncertainty_row(latest, scratch, opt.lambda1, fluctuation_weight, q, scratch + q, u_out);
  } else {
    for (int64_t j = 0; j < q; ++j) u_out[j] = opt.lambda1;  // p = 0.5: one bit, no fluctuation
  }
  if (opt.two_minus_exp) {
    for (int64_t j = 0; j < q; ++j) h_out[j] = math::loss_transform<float>(loss[j], true) * (1.0f - flip[j]);
  } else {
    for (int64_t j = 0; j < q; ++j) h_out[j] = loss[j] * (1.0f - flip[j]);
  }
}

// Σ_j a_j v_j in float64 with four independent partial sums: a single running sum is a
// chain of dependent additions that the compiler may not reorder, four times slower.
D2ACE_SIMD_CLONES double weighted_row_sum(const float* __restrict a, const double* __restrict v, int64_t q) {
  double s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0;
  int64_t j = 0;
  for (; j + 4 <= q; j += 4) {
    s0 += a[j] * v[j];
    s1 += a[j + 1] * v[j + 1];
    s2 += a[j + 2] * v[j + 2];
    s3 += a[j + 3] * v[j + 3];
  }
  for (; j < q; ++j) s0 += a[j] * v[j];
  return (s0 + s1) + (s2 + s3);
}

// ptr (n + 1) must start at 0, never decrease and end at nnz, or rows would be read past
// cols (or with negative lengths). O(n), against the O(n n_t q) of the scoring.
void check_row_ptr(const int64_t* ptr, int64_t n, int64_t nnz, const char* name, const char* cols) {
  TORCH_CHECK(ptr[0] == 0 && ptr[n] == nnz, "score_visits: ", name, " does not describe ", cols,
              ": it must start at 0 and end at ", cols, ".numel() = ", nnz, ", got ", ptr[0], " and ", ptr[n]);
  for (int64_t i = 0; i < n; ++i) {
    TORCH_CHECK(ptr[i] <= ptr[i + 1], "score_visits: ", name, " does not describe ", cols,
                ": it decreases at row ", i, " (", ptr[i], " > ", ptr[i + 1], ")");
  }
}

// Contiguous row ranges, one per thread; chunk c owns rows [bounds[c], bounds[c + 1]).
std::vector<int64_t> chunk_bounds(int64_t n, int64_t chunks) {
  std::vector<int64_t> bounds(chunks + 1);
  for (int64_t c = 0; c <= chunks; ++c) bounds[c] = n * c / chunks;
  return bounds;
}

}  // namespace

ScoreOutputs score_visits_cpu(const at::Tensor& window, const at::Tensor& pushes, const at::Tensor& loss,
                              const at::Tensor& flip_average, const at::Tensor& label_ptr,
                              const at::Tensor& label_cols, const at::Tensor& context_ptr,
                              const at::Tensor& context_cols, const at::Tensor& workspace, double lambda1,
                              bool two_minus_exp,
                              double norm_eps, bool row_normalize, bool label_weights_in_phi) {
  check_score_visits_inputs(window, pushes, loss, flip_average, label_ptr, label_cols, context_ptr,
                            context_cols, workspace, lambda1, norm_eps);
  TORCH_CHECK(window.device().is_cpu(), "score_visits_cpu: tensors must be on the CPU");
  const at::Tensor win_c = window.contiguous(), push_c = pushes.contiguous(), loss_c = loss.contiguous(),
                   flip_c = flip_average.contiguous(), yp_c = label_ptr.contiguous(),
                   yc_c = label_cols.contiguous(), zp_c = context_ptr.contiguous(),
                   zc_c = context_cols.contiguous();
  const int64_t n = win_c.size(0), n_t = win_c.size(1), q = win_c.size(2);
  const float* win = win_c.const_data_ptr<float>();
  const int64_t* push = push_c.const_data_ptr<int64_t>();
  const float* lss = loss_c.const_data_ptr<float>();
  const float* flp = flip_c.const_data_ptr<float>();
  const int64_t* yp = yp_c.const_data_ptr<int64_t>();
  const int64_t* yc = yc_c.const_data_ptr<int64_t>();
  const int64_t* zp = zp_c.const_data_ptr<int64_t>();
  const int64_t* zc = zc_c.const_data_ptr<int64_t>();
  check_row_ptr(yp, n, yc_c.numel(), "label_ptr", "label_cols");
  check_row_ptr(zp, n, zc_c.numel(), "context_ptr", "context_cols");
  for (const at::Tensor* cols : {&yc_c, &zc_c}) {
    if (cols->numel() > 0) {
      TORCH_CHECK(cols->min().item<int64_t>() >= 0 && cols->max().item<int64_t>() < q,
                  "score_visits: label_cols and context_cols must lie in [0, ", q, ")");
    }
  }
  const Options opt{static_cast<float>(lambda1), two_minus_exp};

  // The metrics go to the float32 workspace (2, n, q): row 0 = U, row 1 = H.
  float* mu = workspace.mutable_data_ptr<float>();
  float* mh = mu + n * q;
  std::vector<float> scratch0(2 * q);
  metric_row(win, push[0], lss, flp, n_t, q, opt, mu, mh, scratch0.data());
  std::vector<double> shift(2 * q);
  for (int64_t j = 0; j < q; ++j) {
    shift[j] = mu[j];
    shift[q + j] = mh[j];
  }

  // One chunk per ~1M window entries (about a millisecond of work), at most one per
  // thread: a parallel region costs a scheduler time slice (~12 ms measured) whenever
  // another process holds a core, so small states run inline on the calling thread.
  const int64_t work = n * n_t * q + (yp[n] + zp[n]) * q;
  const int64_t chunks = std::max<int64_t>(1, std::min<int64_t>({at::get_num_threads(), n, work >> 20}));
  const std::vector<int64_t> bounds = chunk_bounds(n, chunks);
  const int64_t qq = q * q;
  const bool gram_per_chunk = 2 * qq * 8 <= kMaxGramBytesPerChunk;
  const int64_t gram_chunks = gram_per_chunk ? chunks : 1;
  std::vector<double> sums(chunks * 4 * q, 0.0);  // per chunk: Σu, Σu², Σh, Σh² (shifted)
  std::vector<double> gram(gram_chunks * 2 * qq, 0.0);

  auto add_gram = [&](int64_t i, double* g) {
    const float* u = mu + i * q;
    const float* h = mh + i * q;
    for (int64_t a = yp[i]; a < yp[i + 1]; ++a) {
      const int64_t ja = yc[a];
      const double ua = u[ja], ha = h[ja];
      for (int64_t c = yp[i]; c < yp[i + 1]; ++c) {
        const int64_t jc = yc[c];
        g[ja * q + jc] += ua * u[jc];
        g[qq + ja * q + jc] += ha * h[jc];
      }
    }
  };

  at::parallel_for(0, chunks, 1, [&](int64_t c_begin, int64_t c_end) {
    std::vector<float> scratch(2 * q);
    for (int64_t c = c_begin; c < c_end; ++c) {
      double* s = sums.data() + c * 4 * q;
      double* g = gram_per_chunk ? gram.data() + c * 2 * qq : nullptr;
      for (int64_t i = bounds[c]; i < bounds[c + 1]; ++i) {
        float* u = mu + i * q;
        float* h = mh + i * q;
        if (i > 0) {
          metric_row(win + i * n_t * q, push[i], lss + i * q, flp + i * q, n_t, q, opt, u, h, scratch.data());
        }
        for (int64_t j = 0; j < q; ++j) {
          const double du = u[j] - shift[j], dh = h[j] - shift[q + j];
          s[j] += du;
          s[q + j] += du * du;
          s[2 * q + j] += dh;
          s[3 * q + j] += dh * dh;
        }
        if (g != nullptr) add_gram(i, g);
      }
    }
  });
  if (!gram_per_chunk) {  // very wide label sets: one Gram buffer, filled serially
    for (int64_t i = 0; i < n; ++i) add_gram(i, gram.data());
  }

  // Pass 2: v (Eqs. 6-7), norms, C (Eq. 9) and the published code's row scale.
  at::Tensor label_weights = at::empty({2, q}, win_c.options().dtype(at::kDouble));
  at::Tensor correlation = at::empty({2, q, q}, label_weights.options());
  std::vector<double> scale(2 * q, 1.0), norm(2 * q);
  double* v = label_weights.mutable_data_ptr<double>();
  double* corr = correlation.mutable_data_ptr<double>();
  for (int64_t m = 0; m < 2; ++m) {
    for (int64_t j = 0; j < q; ++j) {
      double total = 0.0, squares = 0.0;
      for (int64_t c = 0; c < chunks; ++c) {
        total += sums[(c * 4 + 2 * m) * q + j];
        squares += sums[(c * 4 + 2 * m + 1) * q + j];
      }
      const double mean_shifted = total / n;
      const double variance = std::max(0.0, squares / n - mean_shifted * mean_shifted);
      v[m * q + j] = std::exp(0.5 * (shift[m * q + j] + mean_shifted + std::sqrt(variance)));
    }
    double* cm = corr + m * qq;
    for (int64_t e = 0; e < qq; ++e) {
      double total = 0.0;
      for (int64_t c = 0; c < gram_chunks; ++c) total += gram[(c * 2 + m) * qq + e];
      cm[e] = total;
    }
    for (int64_t j = 0; j < q; ++j) norm[m * q + j] = std::sqrt(cm[j * q + j]) + norm_eps;
    for (int64_t j = 0; j < q; ++j) {
      double row_sum = 0.0;
      for (int64_t k = 0; k < q; ++k) {
        const double d = norm[m * q + j] * norm[m * q + k];
        cm[j * q + k] = d > 0.0 ? cm[j * q + k] / d : 0.0;  // 0/0 := 0 for a column without mass
        row_sum += cm[j * q + k];
      }
      if (row_normalize) scale[m * q + j] = 1.0 / (row_sum + kRowNormaliseEps);
    }
  }

  // Pass 3: δ, φ and the range of w per metric.
  at::Tensor delta = at::empty({2, n}, label_weights.options());
  at::Tensor phi = at::empty({2, n}, label_weights.options());
  double* dl = delta.mutable_data_ptr<double>();
  double* ph = phi.mutable_data_ptr<double>();
  std::vector<double> low(2 * chunks, std::numeric_limits<double>::infinity());
  std::vector<double> high(2 * chunks, -std::numeric_limits<double>::infinity());
  // C of both metrics interleaved, [(j q + k) 2 + m], so each gather of the φ loop
  // serves both metrics from one cache line; the per-label factor of φ folded once.
  std::vector<double> paired(2 * qq), factor(2 * q);
  for (int64_t e = 0; e < qq; ++e) {
    paired[2 * e] = corr[e];
    paired[2 * e + 1] = corr[qq + e];
  }
  for (int64_t m = 0; m < 2; ++m) {
    for (int64_t j = 0; j < q; ++j) factor[m * q + j] = scale[m * q + j] * (label_weights_in_phi ? v[m * q + j] : 1.0);
  }
  at::parallel_for(0, chunks, 1, [&](int64_t c_begin, int64_t c_end) {
    for (int64_t c = c_begin; c < c_end; ++c) {
      for (int64_t i = bounds[c]; i < bounds[c + 1]; ++i) {
        const float* au = mu + i * q;
        const float* ah = mh + i * q;
        double fu = 0.0, fh = 0.0;
        for (int64_t e = yp[i]; e < yp[i + 1]; ++e) {
          const int64_t j = yc[e];
          const double* row = paired.data() + 2 * j * q;
          double su = 0.0, sh = 0.0;
          for (int64_t z = zp[i]; z < zp[i + 1]; ++z) {
            su += row[2 * zc[z]];
            sh += row[2 * zc[z] + 1];
          }
          fu += au[j] * su * factor[j];
          fh += ah[j] * sh * factor[q + j];
        }
        const double du = weighted_row_sum(au, v, q), dh = weighted_row_sum(ah, v + q, q);
        dl[i] = du;
        dl[n + i] = dh;
        ph[i] = fu;
        ph[n + i] = fh;
        low[2 * c] = std::min(low[2 * c], du + fu);
        high[2 * c] = std::max(high[2 * c], du + fu);
        low[2 * c + 1] = std::min(low[2 * c + 1], dh + fh);
        high[2 * c + 1] = std::max(high[2 * c + 1], dh + fh);
      }
    }
  });
  at::Tensor weight_range = at::empty({2, 2}, label_weights.options());
  double* range = weight_range.mutable_data_ptr<double>();
  for (int64_t m = 0; m < 2; ++m) {
    range[2 * m] = std::numeric_limits<double>::infinity();
    range[2 * m + 1] = -std::numeric_limits<double>::infinity();
    for (int64_t c = 0; c < chunks; ++c) {
      range[2 * m] = std::min(range[2 * m], low[2 * c + m]);
      range[2 * m + 1] = std::max(range[2 * m + 1], high[2 * c + m]);
    }
  }
  return {label_weights, correlation, delta, phi, weight_range};
}

}  // namespace d2ace_ext
