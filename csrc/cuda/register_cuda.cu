// The one CUDA registration block: every CUDA kernel of the library is bound here.
#include <torch/library.h>

#include "../ops.h"

TORCH_LIBRARY_IMPL(d2ace_ext, CUDA, m) {
  m.impl("binary_entropy", &d2ace_ext::binary_entropy_cuda);
  m.impl("record_step", &d2ace_ext::record_step_cuda);
  m.impl("score_visits", &d2ace_ext::score_visits_cuda);
  m.impl("quantized_mixture", &d2ace_ext::quantized_mixture_cuda);
}
