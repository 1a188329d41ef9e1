// Schema of reconad::topk_mask and its backward (kernels: cpu/, cuda/; autograd, fake tensors and the
// PyTorch reference: reconad/ops/topk_mask.py; definition and rules: docs/ops/topk_mask.md).
#include <torch/library.h>

TORCH_LIBRARY_FRAGMENT(reconad, m) {
  // activation (..., H, W): every trailing H x W map hides its k largest values (eq. 2 of OLED).
  // Returns (mask, same shape and dtype, contiguous; threshold s per map, shape activation.shape[:-2]).
  // `grad` ("ste" or "exact") is not used by the forward kernels: it tells autograd which backward to run.
  m.def("topk_mask(Tensor activation, int k, float eps, str grad) -> (Tensor, Tensor)");
  // Returns grad_activation (same shape as activation, contiguous).
  m.def("topk_mask_backward(Tensor grad, Tensor activation, Tensor threshold, float eps, str grad_mode) "
        "-> Tensor");
}
