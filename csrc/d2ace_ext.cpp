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

namespace d2ace_ext {

void check_binary_entropy_input(const at::Tensor& probs) {
  TORCH_CHECK(at::isFloatingType(probs.scalar_type()),
              "binary_entropy: probs must be a floating-point tensor, got ",
              probs.scalar_type());
}

}  // namespace d2ace_ext

TORCH_LIBRARY(d2ace_ext, m) {
  m.def("binary_entropy(Tensor probs) -> Tensor");
}
