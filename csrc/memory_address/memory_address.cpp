// Schema of reconad::memory_address and its backward (kernels: cpu/, cuda/; autograd and fake tensors:
// reconad/ops/memory_address.py).
#include <torch/library.h>

TORCH_LIBRARY_FRAGMENT(reconad, m) {
  // Returns (output (N, C), entropy per row (N,), lse (N,), lse over the support (N,)); the row
  // statistics are float32 (float64 for float64 inputs). The last two are what the backward needs.
  m.def("memory_address(Tensor z, Tensor keys, Tensor values, float shrink_threshold) -> "
        "(Tensor, Tensor, Tensor, Tensor)");
  // Returns (grad_z, grad_keys, grad_values).
  m.def("memory_address_backward(Tensor grad_output, Tensor grad_entropy, Tensor z, Tensor keys, "
        "Tensor values, Tensor output, Tensor entropy, Tensor lse, Tensor lse_support, "
        "float shrink_threshold) -> (Tensor, Tensor, Tensor)");
}
