// Declarations of the d2ace_ext operator kernels, shared by the registration blocks.
#pragma once

#include <ATen/core/Tensor.h>

namespace d2ace_ext {

// Eq. 1 of the paper: binary entropy in bits, elementwise, with 0·log 0 = 0.
// probs: any shape, floating dtype; values are clamped to [0, 1] first.
at::Tensor binary_entropy_cpu(const at::Tensor& probs);

#ifdef D2ACE_EXT_WITH_CUDA
at::Tensor binary_entropy_cuda(const at::Tensor& probs);
#endif

// Shared input checks, so every backend rejects bad input with the same message.
void check_binary_entropy_input(const at::Tensor& probs);

}  // namespace d2ace_ext
