// CPU kernel of the per-epoch scoring (Eqs. 3, 5-12) for both metrics at once, in three
// passes (csrc/cuda/score_visits_cuda.cu has the same three as kernels):
//
// 1. metric_pass (rows in parallel): U and H of every (i, j) from the float32 state into
//    the workspace, the column sums of Eqs. 6-7 (shifted by row 0 so the variance does
//    not cancel), and the raw masked Gram G = Mᵀ M over the co-occurring positives of
//    each row (Σ_i |Y_i|² pairs).
// 2. column_pass (q² work): v, the column norms √G_jj + ε, C = D⁻¹ G D⁻¹ and the
//    per-label factor of φ (row scale, and v where φ is weighted by it).
// 3. weight_pass (rows in parallel): δ_i = Σ_j A_ij v_j and
//    φ_i = Σ_{j ∈ Y_i} A_ij factor_j Σ_{k ∈ Z_i} C_jk; the range of w = δ + φ.
//
// Every formula is pipeline_math.h's; the passes only decide what is summed where.
// Per-chunk partial sums are merged in chunk order, so results do not depend on timing.
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "../ops.h"
#include "../pipeline_math.h"
#include "score_rows_cpu.h"

namespace d2ace_ext {
namespace {

constexpr int64_t kMaxGramBytesPerChunk = 64 << 20;
// Rows whose metrics are computed as one span: at q ~ 100 the two scratch arrays
// (2 × 16 q floats) stay within L1.
constexpr int64_t kBlockRows = 16;
constexpr double kInf = std::numeric_limits<double>::infinity();

// The recorded state of n instances (inputs of Eqs. 1-5), read only.
struct Records {
  const float* window;        // (n, n_t, q)
  const int64_t* pushes;      // (n,)
  const float* loss;          // (n, q)
  const float* flip_average;  // (n, q)
  int64_t n, n_t, q;
  float lambda1;
  bool two_minus_exp;
};

// CSR rows of a 0/1 matrix (Y or Z): row i's columns are cols[ptr[i] .. ptr[i + 1]).
struct CsrRows {
  const int64_t* ptr;
  const int64_t* cols;
};

// The workspace (2, n, q) float32: row 0 U, row 1 H.
struct Metrics {
  float* uncertainty;
  float* hardness;
};

// Contiguous row ranges, at most one per thread; chunk c owns rows [bounds[c], bounds[c + 1]).
struct Chunks {
  int64_t count;
  std::vector<int64_t> bounds;
};

// What pass 1 leaves for pass 2.
struct ColumnTotals {
  std::vector<double> shift;        // (2, q): row 0's U and H, the shift of the sums
  std::vector<double> sums;         // (chunks, 4, q): Σ(u - shift), Σ(u - shift)², Σ(h - shift), Σ(h - shift)²
  std::vector<double> gram;         // (gram_chunks, 2, q, q): raw masked Gram of U and H
  int64_t gram_chunks;
};

// U (Eq. 3) and H (Eq. 5) of rows [begin, end), at most kBlockRows, into the workspace
// (contiguous rows): the per-row parts (ring window, latest entry) into `scratch`
// (2 kBlockRows q floats), then the formulas over the block as one span.
void metric_block(const Records& records, int64_t begin, int64_t end, const Metrics& metrics, float* scratch) {
  const int64_t n_t = records.n_t, q = records.q, count = (end - begin) * q;
  float* clamped = scratch;
  float* fluctuation = scratch + kBlockRows * q;
  const int64_t window_row = n_t * q;
  for (int64_t i = begin; i < end; ++i) {
    const int64_t pushes = records.pushes[i], r = (i - begin) * q;
    const math::Ring ring = math::ring_of(pushes, n_t);
    const float* window = records.window + i * window_row;
    score_rows::weighted_fluctuation_row(window, ring, n_t, q, math::fluctuation_weight(records.lambda1, ring.held),
                                         fluctuation + r);
    if (pushes > 0) {
      score_rows::clamp_row(window + ring.newest * q, q, clamped + r);
    } else {  // never visited: p = 0.5, whose entropy is exactly one bit
      std::fill(clamped + r, clamped + r + q, math::kUnseenProbability);
    }
  }
  score_rows::uncertainty_span(clamped, fluctuation, records.lambda1, count, metrics.uncertainty + begin * q);
  score_rows::hardness_span(records.loss + begin * q, records.flip_average + begin * q, records.two_minus_exp, count,
                            metrics.hardness + begin * q);
}

// ptr (n + 1) must start at 0, never decrease and end at nnz, or rows would be read past
// cols (or with negative lengths). O(n), against the O(n n_t q) of the scoring.
void check_row_ptr(const int64_t* ptr, int64_t n, int64_t nnz, const char* name, const char* cols) {
  TORCH_CHECK_VALUE(ptr[0] == 0 && ptr[n] == nnz, "score_visits: ", name, " does not describe ", cols,
                    ": it must start at 0 and end at ", cols, ".numel() = ", nnz, ", got ", ptr[0], " and ",
                    ptr[n]);
  for (int64_t i = 0; i < n; ++i) {
    TORCH_CHECK_VALUE(ptr[i] <= ptr[i + 1], "score_visits: ", name, " does not describe ", cols,
                      ": it decreases at row ", i, " (", ptr[i], " > ", ptr[i + 1], ")");
  }
}

Chunks chunks_for(int64_t n, int64_t work) {
  // One chunk per ~1M window entries (about a millisecond of work), at most one per
  // thread: a parallel region costs a scheduler time slice (~12 ms measured) whenever
  // another process holds a core, so small states run inline on the calling thread.
  Chunks chunks;
  chunks.count = std::max<int64_t>(1, std::min<int64_t>({at::get_num_threads(), n, work >> 20}));
  chunks.bounds.resize(chunks.count + 1);
  for (int64_t c = 0; c <= chunks.count; ++c) chunks.bounds[c] = n * c / chunks.count;
  return chunks;
}

// G += m_iᵀ m_i over the positives of row i, for U (g[0 .. q²)) and H (g[q² .. 2q²)).
void add_row_to_gram(const Metrics& metrics, const CsrRows& labels, int64_t i, int64_t q, double* gram) {
  const int64_t qq = q * q;
  const float* u = metrics.uncertainty + i * q;
  const float* h = metrics.hardness + i * q;
  for (int64_t a = labels.ptr[i]; a < labels.ptr[i + 1]; ++a) {
    const int64_t ja = labels.cols[a];
    const double ua = u[ja], ha = h[ja];
    for (int64_t c = labels.ptr[i]; c < labels.ptr[i + 1]; ++c) {
      const int64_t jc = labels.cols[c];
      gram[ja * q + jc] += ua * u[jc];
      gram[qq + ja * q + jc] += ha * h[jc];
    }
  }
}

// Pass 1: the metrics of every row, their shifted column sums and the masked Gram.
ColumnTotals metric_pass(const Records& records, const CsrRows& labels, const Chunks& chunks, const Metrics& metrics) {
  const int64_t n = records.n, q = records.q, qq = q * q;
  ColumnTotals totals;
  // Row 0 first: its metrics are the shift of every column's sums.
  std::vector<float> scratch0(2 * kBlockRows * q);
  metric_block(records, 0, 1, metrics, scratch0.data());
  totals.shift.resize(2 * q);
  for (int64_t j = 0; j < q; ++j) {
    totals.shift[j] = metrics.uncertainty[j];
    totals.shift[q + j] = metrics.hardness[j];
  }
  const bool gram_per_chunk = 2 * qq * 8 <= kMaxGramBytesPerChunk;
  totals.gram_chunks = gram_per_chunk ? chunks.count : 1;
  totals.sums.assign(chunks.count * 4 * q, 0.0);
  totals.gram.assign(totals.gram_chunks * 2 * qq, 0.0);
  const double* shift = totals.shift.data();

  at::parallel_for(0, chunks.count, 1, [&](int64_t c_begin, int64_t c_end) {
    std::vector<float> scratch(2 * kBlockRows * q);
    for (int64_t c = c_begin; c < c_end; ++c) {
      double* sums = totals.sums.data() + c * 4 * q;
      double* gram = gram_per_chunk ? totals.gram.data() + c * 2 * qq : nullptr;
      for (int64_t block = chunks.bounds[c]; block < chunks.bounds[c + 1]; block += kBlockRows) {
        const int64_t block_end = std::min(block + kBlockRows, chunks.bounds[c + 1]);
        const int64_t first = std::max<int64_t>(block, 1);  // row 0's metrics are in place
        if (first < block_end) metric_block(records, first, block_end, metrics, scratch.data());
        for (int64_t i = block; i < block_end; ++i) {
          score_rows::add_row_to_sums(metrics.uncertainty + i * q, shift, q, sums, sums + q);
          score_rows::add_row_to_sums(metrics.hardness + i * q, shift + q, q, sums + 2 * q, sums + 3 * q);
          if (gram != nullptr) add_row_to_gram(metrics, labels, i, q, gram);
        }
      }
    }
  });
  if (!gram_per_chunk) {  // very wide label sets: one Gram buffer, filled serially
    for (int64_t i = 0; i < n; ++i) add_row_to_gram(metrics, labels, i, q, totals.gram.data());
  }
  return totals;
}

// Pass 2: per metric m, v (Eqs. 6-7), C (Eq. 9) and the per-label factor of φ.
// label_weights (2, q), correlation (2, q, q), phi_factor (2, q).
void column_pass(const ColumnTotals& totals, int64_t chunks, int64_t n, int64_t q, double norm_eps,
                 bool row_normalize, bool label_weights_in_phi, double* label_weights, double* correlation,
                 double* phi_factor) {
  const int64_t qq = q * q;
  std::vector<double> norm(q);
  for (int64_t m = 0; m < 2; ++m) {
    double* v = label_weights + m * q;
    for (int64_t j = 0; j < q; ++j) {
      double sum = 0.0, squares = 0.0;
      for (int64_t c = 0; c < chunks; ++c) {
        sum += totals.sums[(c * 4 + 2 * m) * q + j];
        squares += totals.sums[(c * 4 + 2 * m + 1) * q + j];
      }
      v[j] = math::label_weight(totals.shift[m * q + j], sum, squares, n);
    }
    double* c_m = correlation + m * qq;
    for (int64_t e = 0; e < qq; ++e) {
      double gram = 0.0;
      for (int64_t c = 0; c < totals.gram_chunks; ++c) gram += totals.gram[(c * 2 + m) * qq + e];
      c_m[e] = gram;
    }
    for (int64_t j = 0; j < q; ++j) norm[j] = math::column_norm(c_m[j * q + j], norm_eps);  // before C overwrites G
    for (int64_t j = 0; j < q; ++j) {
      double row_sum = 0.0;
      for (int64_t k = 0; k < q; ++k) {
        c_m[j * q + k] = math::correlation(c_m[j * q + k], norm[j], norm[k]);
        row_sum += c_m[j * q + k];
      }
      phi_factor[m * q + j] = math::phi_factor(math::row_scale(row_sum, row_normalize), v[j], label_weights_in_phi);
    }
  }
}

// Pass 3: δ and φ of every row for both metrics, and the range of w = δ + φ.
// delta, phi (2, n); weight_range (2, 2) = [[min, max]] per metric.
void weight_pass(const Metrics& metrics, const CsrRows& labels, const CsrRows& context, const Chunks& chunks,
                 int64_t n, int64_t q, const double* label_weights, const double* correlation,
                 const double* phi_factor, double* delta, double* phi, double* weight_range) {
  const int64_t qq = q * q;
  // C of both metrics interleaved, [(j q + k) 2 + m], so each gather of the φ loop
  // serves both metrics from one cache line.
  std::vector<double> paired(2 * qq);
  for (int64_t e = 0; e < qq; ++e) {
    paired[2 * e] = correlation[e];
    paired[2 * e + 1] = correlation[qq + e];
  }
  std::vector<double> low(2 * chunks.count, kInf), high(2 * chunks.count, -kInf);
  at::parallel_for(0, chunks.count, 1, [&](int64_t c_begin, int64_t c_end) {
    for (int64_t c = c_begin; c < c_end; ++c) {
      for (int64_t i = chunks.bounds[c]; i < chunks.bounds[c + 1]; ++i) {
        const float* u = metrics.uncertainty + i * q;
        const float* h = metrics.hardness + i * q;
        double phi_u = 0.0, phi_h = 0.0;
        for (int64_t e = labels.ptr[i]; e < labels.ptr[i + 1]; ++e) {
          const int64_t j = labels.cols[e];
          const double* row = paired.data() + 2 * j * q;
          double context_u = 0.0, context_h = 0.0;  // Σ_{k ∈ Z_i} C_jk
          for (int64_t z = context.ptr[i]; z < context.ptr[i + 1]; ++z) {
            context_u += row[2 * context.cols[z]];
            context_h += row[2 * context.cols[z] + 1];
          }
          phi_u += math::phi_term(u[j], context_u, phi_factor[j]);
          phi_h += math::phi_term(h[j], context_h, phi_factor[q + j]);
        }
        const double delta_u = score_rows::weighted_row_sum(u, label_weights, q);
        const double delta_h = score_rows::weighted_row_sum(h, label_weights + q, q);
        delta[i] = delta_u;
        delta[n + i] = delta_h;
        phi[i] = phi_u;
        phi[n + i] = phi_h;
        low[2 * c] = std::min(low[2 * c], delta_u + phi_u);
        high[2 * c] = std::max(high[2 * c], delta_u + phi_u);
        low[2 * c + 1] = std::min(low[2 * c + 1], delta_h + phi_h);
        high[2 * c + 1] = std::max(high[2 * c + 1], delta_h + phi_h);
      }
    }
  });
  for (int64_t m = 0; m < 2; ++m) {
    weight_range[2 * m] = kInf;
    weight_range[2 * m + 1] = -kInf;
    for (int64_t c = 0; c < chunks.count; ++c) {
      weight_range[2 * m] = std::min(weight_range[2 * m], low[2 * c + m]);
      weight_range[2 * m + 1] = std::max(weight_range[2 * m + 1], high[2 * c + m]);
    }
  }
}

}  // namespace

ScoreOutputs score_visits_cpu(const at::Tensor& window, const at::Tensor& pushes, const at::Tensor& loss,
                              const at::Tensor& flip_average, const at::Tensor& label_ptr,
                              const at::Tensor& label_cols, const at::Tensor& context_ptr,
                              const at::Tensor& context_cols, const at::Tensor& workspace, double lambda1,
                              bool two_minus_exp, double norm_eps, bool row_normalize, bool label_weights_in_phi) {
  check_score_visits_inputs(window, pushes, loss, flip_average, label_ptr, label_cols, context_ptr,
                            context_cols, workspace, lambda1, norm_eps);
  TORCH_CHECK_VALUE(window.device().is_cpu(), "score_visits_cpu: tensors must be on the CPU");
  const at::Tensor window_c = window.contiguous(), pushes_c = pushes.contiguous(), loss_c = loss.contiguous(),
                   flip_c = flip_average.contiguous(), label_ptr_c = label_ptr.contiguous(),
                   label_cols_c = label_cols.contiguous(), context_ptr_c = context_ptr.contiguous(),
                   context_cols_c = context_cols.contiguous();
  const int64_t n = window_c.size(0), n_t = window_c.size(1), q = window_c.size(2);
  const CsrRows labels{label_ptr_c.const_data_ptr<int64_t>(), label_cols_c.const_data_ptr<int64_t>()};
  const CsrRows context{context_ptr_c.const_data_ptr<int64_t>(), context_cols_c.const_data_ptr<int64_t>()};
  check_row_ptr(labels.ptr, n, label_cols_c.numel(), "label_ptr", "label_cols");
  check_row_ptr(context.ptr, n, context_cols_c.numel(), "context_ptr", "context_cols");
  for (const at::Tensor* cols : {&label_cols_c, &context_cols_c}) {
    if (cols->numel() > 0) {
      TORCH_CHECK_INDEX(cols->min().item<int64_t>() >= 0 && cols->max().item<int64_t>() < q,
                        "score_visits: label_cols and context_cols must lie in [0, ", q, ")");
    }
  }
  const Records records{window_c.const_data_ptr<float>(), pushes_c.const_data_ptr<int64_t>(),
                        loss_c.const_data_ptr<float>(), flip_c.const_data_ptr<float>(), n, n_t, q,
                        static_cast<float>(lambda1), two_minus_exp};
  float* workspace_p = workspace.mutable_data_ptr<float>();
  const Metrics metrics{workspace_p, workspace_p + n * q};
  const Chunks chunks = chunks_for(n, n * n_t * q + (labels.ptr[n] + context.ptr[n]) * q);

  const ColumnTotals totals = metric_pass(records, labels, chunks, metrics);

  const auto f64 = window_c.options().dtype(at::kDouble);
  at::Tensor label_weights = at::empty({2, q}, f64);
  at::Tensor correlation = at::empty({2, q, q}, f64);
  std::vector<double> phi_factor(2 * q);
  column_pass(totals, chunks.count, n, q, norm_eps, row_normalize, label_weights_in_phi,
              label_weights.mutable_data_ptr<double>(), correlation.mutable_data_ptr<double>(), phi_factor.data());

  at::Tensor delta = at::empty({2, n}, f64);
  at::Tensor phi = at::empty({2, n}, f64);
  at::Tensor weight_range = at::empty({2, 2}, f64);
  weight_pass(metrics, labels, context, chunks, n, q, label_weights.const_data_ptr<double>(),
              correlation.const_data_ptr<double>(), phi_factor.data(), delta.mutable_data_ptr<double>(),
              phi.mutable_data_ptr<double>(), weight_range.mutable_data_ptr<double>());
  return {label_weights, correlation, delta, phi, weight_range};
}

}  // namespace d2ace_ext
