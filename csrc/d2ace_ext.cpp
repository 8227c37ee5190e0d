// The one schema block of the d2ace_ext operator library, plus the stub that lets
// `import d2ace_ext._C` load this shared object (and so register the operators).
#include <Python.h>
#include <torch/library.h>

#include "ops.h"

extern "C" {
PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {
      PyModuleDef_HEAD_INIT, "_C", "d2ace_ext native operators", -1, nullptr};
  return PyModule_Create(&module_def);
}
}

TORCH_LIBRARY(d2ace_ext, m) {
  m.def("binary_entropy(Tensor probs) -> Tensor");
  m.def(
      "record_step(Tensor(a!) window, Tensor(b!) pushes, Tensor(c!) last_epoch, Tensor(d!) loss, "
      "Tensor(e!) flip_average, Tensor(f!) flip_base, Tensor(g!) index_errors, Tensor indices, Tensor outputs, "
      "Tensor targets, int epoch, bool from_logits, bool per_epoch, bool flip_on_probability, "
      "float flip_threshold, float lambda2, Tensor? labels=None) -> ()");
  m.def(
      "score_visits(Tensor window, Tensor pushes, Tensor loss, Tensor flip_average, Tensor label_ptr, "
      "Tensor label_cols, Tensor context_ptr, Tensor context_cols, Tensor(a!) workspace, float lambda1, "
      "bool two_minus_exp, "
      "float norm_eps, bool row_normalize, bool label_weights_in_phi) "
      "-> (Tensor label_weights, Tensor correlation, Tensor delta, Tensor phi, Tensor weight_range)");
  m.def(
      "quantized_mixture(Tensor weights, Tensor weight_range, float pressure, float p_beta, "
      "int index_min) -> (Tensor probabilities, Tensor mixture)");
}
