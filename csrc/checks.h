// Input checks shared by every backend of every op, so a bad argument gets the same
// error (naming the op and the argument) on CPU and CUDA; d2ace_ext/ops.py's fake kernels
// check the same dtypes and shapes with the same messages. Errors: TypeError for a dtype,
// ValueError for a shape, device, layout or option, IndexError for an index.
#pragma once

#include <ATen/core/Tensor.h>

#include <initializer_list>
#include <optional>

namespace d2ace_ext {

// `t` must have dtype `dtype`, live on `device` and have `shape` (-1 = any extent).
void expect_tensor(const at::Tensor& t, const char* op, const char* name, at::ScalarType dtype,
                   std::initializer_list<int64_t> shape, const at::Device& device);

// A state tensor updated in place must also be contiguous (kernels index it densely).
void expect_state(const at::Tensor& t, const char* op, const char* name, at::ScalarType dtype,
                  std::initializer_list<int64_t> shape, const at::Device& device);

// The inputs of each op, checked at the top of its CPU and CUDA entry points.
void check_binary_entropy_input(const at::Tensor& probs);

void check_record_step_inputs(const at::Tensor& window, const at::Tensor& pushes,
                              const at::Tensor& last_epoch, const at::Tensor& loss,
                              const at::Tensor& flip_average, const at::Tensor& flip_base,
                              const at::Tensor& index_errors, const at::Tensor& indices,
                              const at::Tensor& outputs, const at::Tensor& targets, double flip_threshold,
                              double lambda2, const std::optional<at::Tensor>& labels);

void check_score_visits_inputs(const at::Tensor& window, const at::Tensor& pushes,
                               const at::Tensor& loss, const at::Tensor& flip_average,
                               const at::Tensor& label_ptr, const at::Tensor& label_cols,
                               const at::Tensor& context_ptr, const at::Tensor& context_cols,
                               const at::Tensor& workspace, double lambda1, double norm_eps);

void check_quantized_mixture_inputs(const at::Tensor& weights, const at::Tensor& weight_range,
                                    double pressure, double p_beta, int64_t index_min);

}  // namespace d2ace_ext
