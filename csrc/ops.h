// Declarations of the d2ace_ext operator kernels, shared by the registration blocks.
// Shapes: n instances, q labels, n_t window slots, b batch rows.
#pragma once

#include <ATen/core/Tensor.h>

#include <tuple>

#include "checks.h"

namespace d2ace_ext {

using ScoreOutputs = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>;
using MixtureOutputs = std::tuple<at::Tensor, at::Tensor>;

// Eq. 1: binary entropy in bits, elementwise, with 0·log 0 = 0 (any shape, float dtype).
at::Tensor binary_entropy_cpu(const at::Tensor& probs);

// One training step recorded in place (Eqs. 1-5 inputs): sigmoid / BCE of the batch's
// outputs (b, q), the window ring (n, n_t, q), pushes and last_epoch (n,), latest loss,
// flip EMA and its per-epoch base (n, q). indices (b,) int64 distinct. index_errors (1,)
// int64: the CUDA kernel adds the number of out-of-range indices it skipped (the CPU
// kernel raises instead). labels (n, q) bool, optional: the CPU kernel checks that
// targets equal labels at indices (the CUDA kernel checks no values; d2ace_ext/ops.py
// does it for it, with one host read).
void record_step_cpu(const at::Tensor& window, const at::Tensor& pushes, const at::Tensor& last_epoch,
                     const at::Tensor& loss, const at::Tensor& flip_average, const at::Tensor& flip_base,
                     const at::Tensor& index_errors, const at::Tensor& indices, const at::Tensor& outputs,
                     const at::Tensor& targets, int64_t epoch, bool from_logits, bool per_epoch,
                     bool flip_on_probability, double flip_threshold, double lambda2,
                     const std::optional<at::Tensor>& labels);

// Eqs. 3, 5-12 for both metrics (row 0: uncertainty U, row 1: hardness H) from the state
// and the CSR rows of Y and Z; workspace (2, n, q) float32 receives U and H (reused
// across epochs: a fresh 2nq buffer costs more in page faults than the pass itself).
// Returns label weights v (2, q), correlation C (2, q, q), δ (2, n), φ (2, n) and the
// [min, max] of w = δ + φ (2, 2); all float64.
ScoreOutputs score_visits_cpu(const at::Tensor& window, const at::Tensor& pushes, const at::Tensor& loss,
                              const at::Tensor& flip_average, const at::Tensor& label_ptr,
                              const at::Tensor& label_cols, const at::Tensor& context_ptr,
                              const at::Tensor& context_cols, const at::Tensor& workspace, double lambda1,
                              bool two_minus_exp, double norm_eps, bool row_normalize, bool label_weights_in_phi);

// Eqs. 13-14 for both rows of w (2, n) given their [min, max] (2, 2), and Eq. 16's
// mixture. Returns P (2, n) and p_β P_U + (1 - p_β) P_H (n,); float64.
MixtureOutputs quantized_mixture_cpu(const at::Tensor& weights, const at::Tensor& weight_range,
                                     double pressure, double p_beta, int64_t index_min);

#ifdef D2ACE_EXT_WITH_CUDA
at::Tensor binary_entropy_cuda(const at::Tensor& probs);
void record_step_cuda(const at::Tensor& window, const at::Tensor& pushes, const at::Tensor& last_epoch,
                      const at::Tensor& loss, const at::Tensor& flip_average, const at::Tensor& flip_base,
                      const at::Tensor& index_errors, const at::Tensor& indices, const at::Tensor& outputs,
                      const at::Tensor& targets, int64_t epoch, bool from_logits, bool per_epoch,
                      bool flip_on_probability, double flip_threshold, double lambda2,
                      const std::optional<at::Tensor>& labels);
ScoreOutputs score_visits_cuda(const at::Tensor& window, const at::Tensor& pushes, const at::Tensor& loss,
                               const at::Tensor& flip_average, const at::Tensor& label_ptr,
                               const at::Tensor& label_cols, const at::Tensor& context_ptr,
                               const at::Tensor& context_cols, const at::Tensor& workspace, double lambda1,
                               bool two_minus_exp, double norm_eps, bool row_normalize, bool label_weights_in_phi);
MixtureOutputs quantized_mixture_cuda(const at::Tensor& weights, const at::Tensor& weight_range,
                                      double pressure, double p_beta, int64_t index_min);
#endif

}  // namespace d2ace_ext
