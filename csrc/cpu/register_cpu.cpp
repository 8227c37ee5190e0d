// The one CPU registration block: every CPU kernel of the library is bound here.
#include <torch/library.h>

#include "../ops.h"

TORCH_LIBRARY_IMPL(d2ace_ext, CPU, m) {
  m.impl("binary_entropy", &d2ace_ext::binary_entropy_cpu);
  m.impl("record_step", &d2ace_ext::record_step_cpu);
  m.impl("score_visits", &d2ace_ext::score_visits_cpu);
  m.impl("quantized_mixture", &d2ace_ext::quantized_mixture_cpu);
}
