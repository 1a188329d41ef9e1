// Pieces shared by the CPU and CUDA pro_curve kernels: argument checks, the order-preserving integer key
// of a float, and the curve / area accumulator that follows the official MVTec AD evaluation code.
#pragma once

#include <ATen/ATen.h>
#include <c10/util/Exception.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

namespace reconad {
namespace pro_curve_detail {

inline void check_inputs(const at::Tensor& maps, const at::Tensor& masks, double fpr_limit) {
  TORCH_CHECK_VALUE(maps.dim() == 3, "pro_curve: anomaly_maps must be (N, H, W), got ", maps.sizes());
  TORCH_CHECK_VALUE(masks.sizes() == maps.sizes(), "pro_curve: masks must have the maps' shape ", maps.sizes(),
                    ", got ", masks.sizes());
  TORCH_CHECK_VALUE(maps.scalar_type() == at::kFloat || maps.scalar_type() == at::kDouble,
                    "pro_curve: anomaly_maps must be float32 or float64, got ", maps.scalar_type());
  TORCH_CHECK_VALUE(masks.scalar_type() == at::kBool || masks.scalar_type() == at::kByte,
                    "pro_curve: masks must be bool or uint8, got ", masks.scalar_type());
  TORCH_CHECK_VALUE(maps.device() == masks.device(), "pro_curve: maps on ", maps.device(), " but masks on ",
                    masks.device());
  TORCH_CHECK_VALUE(fpr_limit > 0.0 && fpr_limit <= 1.0, "pro_curve: fpr_limit must be in (0, 1], got ",
                    fpr_limit);
}

template <typename T> struct KeyOf;
template <> struct KeyOf<float> { using type = uint32_t; };
template <> struct KeyOf<double> { using type = uint64_t; };

// Monotone map float -> unsigned (a < b <=> key(a) < key(b)); -0.0 and +0.0 share a key (one curve point).
template <typename T>
inline typename KeyOf<T>::type float_key(T v) {
  using K = typename KeyOf<T>::type;
  v = v + T(0);  // -0.0 + 0.0 == +0.0 (no -ffast-math in this build)
  K b;
  std::memcpy(&b, &v, sizeof(T));
  const K sign = K(1) << (8 * sizeof(K) - 1);
  return (b & sign) ? K(~b) : K(b | sign);
}

template <typename T>
inline bool key_is_nan(typename KeyOf<T>::type k) {
  return k > float_key<T>(INFINITY) || k < float_key<T>(-INFINITY);
}

// Largest c with c / n <= limit in float64: the normal-pixel count up to which the curve is needed.
inline int64_t max_normal_count(double limit, int64_t n) {
  int64_t c = static_cast<int64_t>(std::floor(limit * static_cast<double>(n)));
  if (c > n) c = n;
  while (c + 1 <= n && static_cast<double>(c + 1) / static_cast<double>(n) <= limit) ++c;
  while (c > 0 && static_cast<double>(c) / static_cast<double>(n) > limit) --c;
  return c;
}

// Neumaier-compensated sum (keeps the long running sums exact to ~1 ulp).
struct CompensatedSum {
  double s = 0.0, c = 0.0;
  inline void add(double x) {
    const double t = s + x;
    c += (std::fabs(s) >= std::fabs(x)) ? (s - t) + x : (x - t) + s;
    s = t;
  }
  inline double value() const { return s + c; }
};

// Area under the segment that crosses the limit, from the point (fp_prev, P_prev) to (fp, P) (counts and
// sums of 1 / region size), cut at the limit by linear interpolation as the official trapezoid() does.
inline double crossing_area(double limit, int64_t fp_prev, double p_prev, int64_t fp, double p, int64_t n_normal,
                            int64_t n_regions) {
  const double nn = static_cast<double>(n_normal), nr = static_cast<double>(n_regions);
  const double px = static_cast<double>(fp_prev) / nn, x = static_cast<double>(fp) / nn;
  const double py = std::min(p_prev / nr, 1.0), y = std::min(p / nr, 1.0);
  if (px == limit) return 0.0;
  const double y_at = py + (y - py) * (limit - px) / (x - px);
  return 0.5 * (y_at + py) * (limit - px);
}

// Consumes curve points in order and integrates like the official trapezoid(x, y, x_max=limit):
// trapezoids for x <= limit, then the segment that crosses the limit cut by linear interpolation.
struct AreaAccumulator {
  double limit, n_normal, n_regions;
  bool keep_curve;
  double px = 0.0, py = 0.0;
  CompensatedSum area;
  bool done = false;
  std::vector<double> fpr{0.0}, pro{0.0};

  AreaAccumulator(double limit_, int64_t n_normal_, int64_t n_regions_, bool keep)
      : limit(limit_), n_normal(static_cast<double>(n_normal_)), n_regions(static_cast<double>(n_regions_)),
        keep_curve(keep) {}

  // fp: normal pixels at or above the threshold; pro_sum: sum over those anomalous pixels of 1 / region size
  inline void point(int64_t fp, double pro_sum) {
    if (done) return;
    double x = static_cast<double>(fp) / n_normal;
    double y = pro_sum / n_regions;
    x = x < 0.0 ? 0.0 : (x > 1.0 ? 1.0 : x);
    y = y < 0.0 ? 0.0 : (y > 1.0 ? 1.0 : y);
    if (keep_curve) {
      fpr.push_back(x);
      pro.push_back(y);
    }
    if (x <= limit) {
      area.add(0.5 * (y + py) * (x - px));
      px = x;
      py = y;
    } else {
      if (px != limit) {
        const double y_at = py + (y - py) * (limit - px) / (x - px);
        area.add(0.5 * (y_at + py) * (limit - px));
      }
      done = true;
    }
  }

  std::vector<at::Tensor> outputs(int64_t n_normal_, int64_t n_regions_) const {
    auto f64 = at::TensorOptions().dtype(at::kDouble);
    at::Tensor tf = at::empty({keep_curve ? static_cast<int64_t>(fpr.size()) : 0}, f64);
    at::Tensor tp = at::empty({keep_curve ? static_cast<int64_t>(pro.size()) : 0}, f64);
    if (keep_curve) {
      std::memcpy(tf.data_ptr<double>(), fpr.data(), fpr.size() * sizeof(double));
      std::memcpy(tp.data_ptr<double>(), pro.data(), pro.size() * sizeof(double));
    }
    at::Tensor st = at::empty({3}, f64);
    double* s = st.data_ptr<double>();
    s[0] = area.value();
    s[1] = static_cast<double>(n_normal_);
    s[2] = static_cast<double>(n_regions_);
    return {tf, tp, st};
  }
};

}  // namespace pro_curve_detail
}  // namespace reconad
