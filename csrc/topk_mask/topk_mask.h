// Shared by the CPU and CUDA kernels of reconad::topk_mask: argument checks and the order-preserving map
// from floating-point values to unsigned keys that the radix/histogram selections work on.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>

#include <ATen/ATen.h>

#if defined(__CUDACC__)
#define TOPK_MASK_HD __host__ __device__ __forceinline__
#else
#define TOPK_MASK_HD inline
#endif

namespace reconad {
namespace topk_mask {

// Radix digit width of the selections (2048 histogram bins).
constexpr int kDigitBits = 11;
constexpr int kBins = 1 << kDigitBits;

template <typename T>
struct KeyOf;
template <>
struct KeyOf<float> {
  using type = uint32_t;
};
template <>
struct KeyOf<double> {
  using type = uint64_t;
};

// Unsigned keys ordered like the values, with torch.sort's conventions: every NaN is above +inf and
// -0.0 == +0.0 (both map to the key of +0.0, so a zero threshold always comes back as +0.0).
TOPK_MASK_HD uint32_t to_key(float v) {
  if (v != v) return 0xFFFFFFFFu;
  if (v == 0.0f) v = 0.0f;
  uint32_t u;
#if defined(__CUDA_ARCH__)
  u = __float_as_uint(v);
#else
  std::memcpy(&u, &v, sizeof(u));
#endif
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

TOPK_MASK_HD uint64_t to_key(double v) {
  if (v != v) return 0xFFFFFFFFFFFFFFFFull;
  if (v == 0.0) v = 0.0;
  uint64_t u;
#if defined(__CUDA_ARCH__)
  u = static_cast<uint64_t>(__double_as_longlong(v));
#else
  std::memcpy(&u, &v, sizeof(u));
#endif
  return (u & 0x8000000000000000ull) ? ~u : (u | 0x8000000000000000ull);
}

template <typename T>
TOPK_MASK_HD T from_key(typename KeyOf<T>::type key);

template <>
TOPK_MASK_HD float from_key<float>(uint32_t key) {
  const uint32_t u = (key & 0x80000000u) ? (key & 0x7FFFFFFFu) : ~key;
#if defined(__CUDA_ARCH__)
  return __uint_as_float(u);
#else
  float v;
  std::memcpy(&v, &u, sizeof(v));
  return v;
#endif
}

template <>
TOPK_MASK_HD double from_key<double>(uint64_t key) {
  const uint64_t u = (key & 0x8000000000000000ull) ? (key & 0x7FFFFFFFFFFFFFFFull) : ~key;
#if defined(__CUDA_ARCH__)
  return __longlong_as_double(static_cast<long long>(u));
#else
  double v;
  std::memcpy(&v, &u, sizeof(v));
  return v;
#endif
}

// Eq. 2 for one pixel: relu(s - a) / (relu(s - a) + eps), NaN propagating like torch.relu.
template <typename T>
TOPK_MASK_HD T mask_value(T s, T a, T eps) {
  T d = s - a;
  d = d < T(0) ? T(0) : d;
  return d / (d + eps);
}

// Exact-mode weight eps / (d + eps)^2 for d = s - a > 0, as (eps / (d + eps)) / (d + eps): no overflow
// of (d + eps)^2 when d + eps is tiny, no underflow of it when d is large.
template <typename T>
TOPK_MASK_HD T exact_weight(T s, T a, T eps) {
  const T den = (s - a) + eps;
  return (eps / den) / den;
}

inline int64_t map_size(const at::Tensor& activation) {
  return activation.size(-1) * activation.size(-2);
}

inline void check_forward(const at::Tensor& activation, int64_t k, double eps, const std::string& grad) {
  TORCH_CHECK(activation.dim() >= 2, "topk_mask: activation must be (..., H, W), got shape ",
              activation.sizes());
  TORCH_CHECK(at::isFloatingType(activation.scalar_type()),
              "topk_mask: activation must be floating point, got ", activation.scalar_type());
  const int64_t n = map_size(activation);
  TORCH_CHECK(n >= 1, "topk_mask: maps must have at least one pixel, got shape ", activation.sizes());
  TORCH_CHECK(n <= (int64_t(1) << 30), "topk_mask: maps of more than 2^30 pixels are not supported, got ", n);
  TORCH_CHECK(k >= 1 && k <= n, "topk_mask: k (pixels to hide) must be in [1, H*W = ", n, "], got ", k);
  TORCH_CHECK(eps > 0.0 && eps < INFINITY, "topk_mask: eps must be finite and > 0, got ", eps);
  TORCH_CHECK(grad == "ste" || grad == "exact", "topk_mask: grad must be 'ste' or 'exact', got '", grad, "'");
}

inline void check_backward(const at::Tensor& grad, const at::Tensor& activation, const at::Tensor& threshold,
                           double eps, const std::string& grad_mode) {
  TORCH_CHECK(activation.dim() >= 2, "topk_mask_backward: activation must be (..., H, W), got shape ",
              activation.sizes());
  TORCH_CHECK(at::isFloatingType(activation.scalar_type()),
              "topk_mask_backward: activation must be floating point, got ", activation.scalar_type());
  TORCH_CHECK(grad.sizes() == activation.sizes(), "topk_mask_backward: grad must have the activation's shape ",
              activation.sizes(), ", got ", grad.sizes());
  TORCH_CHECK(threshold.sizes() == activation.sizes().slice(0, activation.dim() - 2),
              "topk_mask_backward: threshold must have shape activation.shape[:-2] = ",
              activation.sizes().slice(0, activation.dim() - 2), ", got ", threshold.sizes());
  TORCH_CHECK(grad.device() == activation.device() && threshold.device() == activation.device(),
              "topk_mask_backward: grad, activation and threshold must be on one device");
  TORCH_CHECK(map_size(activation) >= 1, "topk_mask_backward: maps must have at least one pixel, got shape ",
              activation.sizes());
  TORCH_CHECK(eps > 0.0 && eps < INFINITY, "topk_mask_backward: eps must be finite and > 0, got ", eps);
  TORCH_CHECK(grad_mode == "ste" || grad_mode == "exact",
              "topk_mask_backward: grad_mode must be 'ste' or 'exact', got '", grad_mode, "'");
}

}  // namespace topk_mask
}  // namespace reconad
