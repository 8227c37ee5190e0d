// Definitions of the shared input checks (see checks.h). Exception types follow one rule
// (docs/fidelity.md, "Who checks what"): a wrong dtype is a TypeError, a wrong shape,
// device, layout or option value a ValueError, an index outside its range an IndexError
// (TORCH_CHECK_TYPE / _VALUE / _INDEX, which reach Python as those classes).
#include "checks.h"

#include <c10/util/Exception.h>

namespace d2ace_ext {

void expect_tensor(const at::Tensor& t, const char* op, const char* name, at::ScalarType dtype,
                   std::initializer_list<int64_t> shape, const at::Device& device) {
  TORCH_CHECK_VALUE(t.defined(), op, ": ", name, " is undefined");
  TORCH_CHECK_TYPE(t.scalar_type() == dtype, op, ": ", name, " must have dtype ", dtype, ", got ",
                   t.scalar_type());
  TORCH_CHECK_VALUE(t.device() == device, op, ": ", name, " must be on ", device, " like the state, got ",
                    t.device());
  bool ok = t.dim() == static_cast<int64_t>(shape.size());
  int64_t d = 0;
  for (int64_t extent : shape) {
    if (ok && extent >= 0 && t.size(d) != extent) ok = false;
    ++d;
  }
  TORCH_CHECK_VALUE(ok, op, ": ", name, " has shape ", t.sizes(), ", expected ", at::IntArrayRef(shape),
                    " (-1 = any)");
}

void expect_state(const at::Tensor& t, const char* op, const char* name, at::ScalarType dtype,
                  std::initializer_list<int64_t> shape, const at::Device& device) {
  expect_tensor(t, op, name, dtype, shape, device);
  TORCH_CHECK_VALUE(t.is_contiguous(), op, ": state tensor ", name, " must be contiguous");
}

void check_binary_entropy_input(const at::Tensor& probs) {
  TORCH_CHECK_TYPE(at::isFloatingType(probs.scalar_type()),
                   "binary_entropy: probs must be a floating-point tensor, got ", probs.scalar_type());
}

void check_record_step_inputs(const at::Tensor& window, const at::Tensor& pushes,
                              const at::Tensor& last_epoch, const at::Tensor& loss,
                              const at::Tensor& flip_average, const at::Tensor& flip_base,
                              const at::Tensor& index_errors, const at::Tensor& indices,
                              const at::Tensor& outputs, const at::Tensor& targets, double flip_threshold,
                              double lambda2, const std::optional<at::Tensor>& labels) {
  const char* op = "record_step";
  TORCH_CHECK_VALUE(window.dim() == 3, op, ": window must be (n, n_t, q), got shape ", window.sizes());
  const int64_t n = window.size(0), n_t = window.size(1), q = window.size(2);
  const at::Device dev = window.device();
  TORCH_CHECK_VALUE(n_t >= 1, op, ": window must hold at least one slot per instance");
  expect_state(window, op, "window", at::kFloat, {n, n_t, q}, dev);
  expect_state(pushes, op, "pushes", at::kLong, {n}, dev);
  expect_state(last_epoch, op, "last_epoch", at::kLong, {n}, dev);
  expect_state(loss, op, "loss", at::kFloat, {n, q}, dev);
  expect_state(flip_average, op, "flip_average", at::kFloat, {n, q}, dev);
  expect_state(flip_base, op, "flip_base", at::kFloat, {n, q}, dev);
  expect_state(index_errors, op, "index_errors", at::kLong, {1}, dev);
  expect_tensor(indices, op, "indices", at::kLong, {-1}, dev);
  const int64_t b = indices.size(0);
  expect_tensor(outputs, op, "outputs", at::kFloat, {b, q}, dev);
  expect_tensor(targets, op, "targets", at::kFloat, {b, q}, dev);
  if (labels.has_value()) expect_tensor(*labels, op, "labels", at::kBool, {n, q}, dev);
  TORCH_CHECK_VALUE(flip_threshold > 0.0 && flip_threshold < 1.0, op,
                    ": flip_threshold must lie in (0, 1), got ", flip_threshold);
  TORCH_CHECK_VALUE(lambda2 > 0.0 && lambda2 <= 1.0, op, ": lambda2 must lie in (0, 1], got ", lambda2);
}

void check_score_visits_inputs(const at::Tensor& window, const at::Tensor& pushes,
                               const at::Tensor& loss, const at::Tensor& flip_average,
                               const at::Tensor& label_ptr, const at::Tensor& label_cols,
                               const at::Tensor& context_ptr, const at::Tensor& context_cols,
                               const at::Tensor& workspace, double lambda1, double norm_eps) {
  const char* op = "score_visits";
  TORCH_CHECK_VALUE(window.dim() == 3, op, ": window must be (n, n_t, q), got shape ", window.sizes());
  const int64_t n = window.size(0), n_t = window.size(1), q = window.size(2);
  const at::Device dev = window.device();
  TORCH_CHECK_VALUE(n >= 1 && n_t >= 1 && q >= 1, op, ": window must have n, n_t, q >= 1, got ",
                    window.sizes());
  expect_tensor(window, op, "window", at::kFloat, {n, n_t, q}, dev);
  expect_tensor(pushes, op, "pushes", at::kLong, {n}, dev);
  expect_tensor(loss, op, "loss", at::kFloat, {n, q}, dev);
  expect_tensor(flip_average, op, "flip_average", at::kFloat, {n, q}, dev);
  expect_tensor(label_ptr, op, "label_ptr", at::kLong, {n + 1}, dev);
  expect_tensor(label_cols, op, "label_cols", at::kLong, {-1}, dev);
  expect_tensor(context_ptr, op, "context_ptr", at::kLong, {n + 1}, dev);
  expect_tensor(context_cols, op, "context_cols", at::kLong, {-1}, dev);
  expect_state(workspace, op, "workspace", at::kFloat, {2, n, q}, dev);
  TORCH_CHECK_VALUE(lambda1 >= 0.0 && lambda1 <= 1.0, op, ": lambda1 must lie in [0, 1], got ", lambda1);
  TORCH_CHECK_VALUE(norm_eps >= 0.0, op, ": norm_eps must be >= 0, got ", norm_eps);
}

void check_quantized_mixture_inputs(const at::Tensor& weights, const at::Tensor& weight_range,
                                    double pressure, double p_beta, int64_t index_min) {
  const char* op = "quantized_mixture";
  TORCH_CHECK_VALUE(weights.dim() == 2 && weights.size(0) == 2 && weights.size(1) >= 1, op,
                    ": weights must be (2, n) with n >= 1 (rows: uncertainty, hardness), got shape ",
                    weights.sizes());
  expect_tensor(weights, op, "weights", at::kDouble, {2, -1}, weights.device());
  expect_tensor(weight_range, op, "weight_range", at::kDouble, {2, 2}, weights.device());
  TORCH_CHECK_VALUE(pressure >= 1.0, op, ": pressure must be >= 1, got ", pressure);
  TORCH_CHECK_VALUE(p_beta >= 0.0 && p_beta <= 1.0, op, ": p_beta must lie in [0, 1], got ", p_beta);
  TORCH_CHECK_VALUE(index_min == 0 || index_min == 1, op, ": index_min must be 0 or 1, got ", index_min);
}

}  // namespace d2ace_ext
