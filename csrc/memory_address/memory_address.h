// Shared declarations of reconad::memory_address (MemAE memory addressing with hard shrinkage, defined as
// the eps -> 0 limit: a softmax restricted to the support S_n = {k : s_nk > lse_n + ln lambda}).
//
//   s = z keys^T,  lse_n = logsumexp_k s_nk,  w_nk = exp(s_nk - lse_S_n) on S_n (0 elsewhere)
//   output = w values,  entropy_n = -sum_k w_nk log w_nk  (0 for an empty support)
//
// Similarity normalisation (cosine) is done by the caller, so keys = normalised memory, values = memory.
#pragma once

#include <cmath>
#include <tuple>

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

namespace reconad::memory_address {

// Row statistics (entropy, lse, lse_support) are kept in double for double inputs, float otherwise.
inline at::ScalarType stats_dtype(at::ScalarType t) {
  return t == at::kDouble ? at::kDouble : at::kFloat;
}

inline void check_inputs(const at::Tensor& z, const at::Tensor& keys, const at::Tensor& values,
                         double shrink_threshold) {
  TORCH_CHECK(z.dim() == 2, "memory_address: z must be (N, C), got ", z.sizes());
  TORCH_CHECK(keys.dim() == 2 && keys.size(1) == z.size(1), "memory_address: keys must be (K, C) with C = ",
              z.size(1), " (from z), got ", keys.sizes());
  TORCH_CHECK(values.sizes() == keys.sizes(), "memory_address: values must have the shape of keys ",
              keys.sizes(), ", got ", values.sizes());
  TORCH_CHECK(keys.size(0) >= 1, "memory_address: memory needs at least one slot (K >= 1)");
  TORCH_CHECK(shrink_threshold >= 0.0 && shrink_threshold < 1.0,
              "memory_address: shrink_threshold must be in [0, 1), got ", shrink_threshold);
  TORCH_CHECK(z.scalar_type() == keys.scalar_type() && z.scalar_type() == values.scalar_type(),
              "memory_address: z, keys and values must share a dtype, got ", z.scalar_type(), ", ",
              keys.scalar_type(), ", ", values.scalar_type());
  TORCH_CHECK(z.device() == keys.device() && z.device() == values.device(),
              "memory_address: z, keys and values must be on one device, got ", z.device(), ", ",
              keys.device(), ", ", values.device());
}

inline void check_backward_inputs(const at::Tensor& grad_out, const at::Tensor& grad_h, const at::Tensor& z,
                                  const at::Tensor& keys, const at::Tensor& values, const at::Tensor& out,
                                  const at::Tensor& h, const at::Tensor& lse, const at::Tensor& lse_s,
                                  double shrink_threshold) {
  check_inputs(z, keys, values, shrink_threshold);
  TORCH_CHECK(grad_out.sizes() == z.sizes() && out.sizes() == z.sizes(),
              "memory_address_backward: grad_output and output must be (N, C) = ", z.sizes(), ", got ",
              grad_out.sizes(), " and ", out.sizes());
  for (const at::Tensor* t : {&grad_h, &h, &lse, &lse_s}) {
    TORCH_CHECK(t->dim() == 1 && t->size(0) == z.size(0), "memory_address_backward: row statistics must be (N,) = (",
                z.size(0), ",), got ", t->sizes());
  }
}

// ln(lambda), or -inf for lambda = 0 (every slot is in the support).
inline double log_threshold(double shrink_threshold) {
  return shrink_threshold > 0.0 ? std::log(shrink_threshold) : -INFINITY;
}

}  // namespace reconad::memory_address
