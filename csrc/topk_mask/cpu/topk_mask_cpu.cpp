// CPU kernels of reconad::topk_mask: maps in parallel, per map a selection of the k-th largest value
// (equal-width buckets of [min, max], then radix digits of order-preserving keys on the chosen bucket's
// candidates, see select_key), then eq. 2 in one pass. Backward: one reduction and one pass per map.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <condition_variable>
#include <exception>
#include <functional>
#include <limits>
#include <memory>
#include <mutex>
#include <vector>

#include <ATen/ATen.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "topk_mask/topk_mask.h"

namespace reconad {
namespace topk_mask {
namespace {

// at::parallel_for over [begin, end). ATen's parallel_for is inline OpenMP code: in a translation unit
// compiled without -fopenmp (setup.py passes none) it runs serially. Then the chunks go to ATen's
// inter-op pool (at::launch), at most at::get_num_threads() of them at once; the calling thread takes
// chunks too and waits only for chunks already started, so it cannot deadlock on a busy pool.
template <typename F>
void parallel_for(int64_t begin, int64_t end, int64_t grain, const F& f) {
#if defined(_OPENMP)
  at::parallel_for(begin, end, grain, f);
#else
  const int64_t total = end - begin;
  if (total <= 0) return;
  const int64_t threads = std::max<int64_t>(1, at::get_num_threads());
  const int64_t chunks = std::min<int64_t>(threads, (total + grain - 1) / std::max<int64_t>(grain, 1));
  if (chunks <= 1) {
    f(begin, end);
    return;
  }
  struct State {
    std::atomic<int64_t> next{0};
    int64_t done = 0;
    std::mutex mu;
    std::condition_variable cv;
    std::exception_ptr error;
  };
  auto state = std::make_shared<State>();
  const int64_t step = (total + chunks - 1) / chunks;
  const std::function<void(int64_t, int64_t)> body = f;
  const std::function<void(int64_t, int64_t)>* body_ptr = &body;
  // Late pool tasks find no chunk left and return without touching body (which may be gone by then).
  auto work = [state, body_ptr, begin, end, step, chunks]() {
    for (int64_t c; (c = state->next.fetch_add(1)) < chunks;) {
      std::exception_ptr err;
      try {
        (*body_ptr)(begin + c * step, std::min(end, begin + (c + 1) * step));
      } catch (...) {
        err = std::current_exception();
      }
      std::lock_guard<std::mutex> lock(state->mu);
      if (err && !state->error) state->error = err;
      if (++state->done == chunks) state->cv.notify_all();
    }
  };
  for (int64_t t = 1; t < chunks; ++t) at::launch(work);
  work();
  std::unique_lock<std::mutex> lock(state->mu);
  state->cv.wait(lock, [&] { return state->done == chunks; });
  if (state->error) std::rethrow_exception(state->error);
#endif
}

// Below this many candidates, nth_element beats another histogram pass.
constexpr int64_t kSmallSelect = 128;

// Walk the histogram from the top bin down to the bin holding the k-th largest. Returns the bin and
// turns k into the rank inside that bin.
inline int64_t find_bin(const uint32_t* hist, int64_t bins, int64_t& k) {
  int64_t above = 0;
  for (int64_t b = bins - 1; b > 0; --b) {
    if (above + hist[b] >= k) {
      k -= above;
      return b;
    }
    above += hist[b];
  }
  k -= above;
  return 0;
}

// Histograms are counted into four interleaved sub-histograms hist[j * kStride + b] (element i into
// j = i % 4): runs of equal bins (ties, ReLU zeros) would otherwise serialise on one counter's
// load-add-store chain. This sums them into hist[0..bins).
// Sub-histogram stride: kBins + 16 keeps equal bins of different sub-histograms from aliasing modulo
// 4 KiB (which makes the CPU's store-to-load check serialise them again).
constexpr int64_t kStride = kBins + 16;

inline void histogram_clear(uint32_t* hist, int64_t bins) {
  for (int j = 0; j < 4; ++j) std::fill(hist + j * kStride, hist + j * kStride + bins, 0u);
}

inline void histogram_merge(uint32_t* hist, int64_t bins) {
  for (int64_t b = 0; b < bins; ++b) hist[b] += hist[kStride + b] + hist[2 * kStride + b] + hist[3 * kStride + b];
}

// The key (see topk_mask.h) of the k-th largest of x[0..n), 1 <= k <= n. `buf`, `ids`, `vals` hold n
// entries, `hist` 4 * kStride counters.
//   1. one pass: min, max and the NaN count (NaNs are the largest);
//   2. histogram of the non-NaN values over `bins` equal-width buckets of [min, max]: bucket(v) =
//      min(bins - 1, int((v - min) * scale)) is monotone in v under any rounding, so the bucket holding
//      the k-th largest is found exactly, and for real data it holds ~n / bins values;
//   3. gather that bucket's keys, then 11-bit radix digits of the keys, top first, until few are left;
//      nth_element on the rest.
template <typename scalar_t, typename opmath_t>
typename KeyOf<opmath_t>::type select_key(const scalar_t* x, int64_t n, int64_t k,
                                          typename KeyOf<opmath_t>::type* buf, uint32_t* hist,
                                          uint16_t* ids, opmath_t* vals) {
  using key_t = typename KeyOf<opmath_t>::type;
  constexpr int kKeyBits = 8 * sizeof(key_t);
  // eight independent accumulators: no loop-carried latency chain, and the compiler vectorises them
  constexpr int kLanes = 8;
  opmath_t los[kLanes], his[kLanes];
  int64_t nan_lanes[kLanes];
  for (int l = 0; l < kLanes; ++l) {
    los[l] = std::numeric_limits<opmath_t>::infinity();
    his[l] = -los[l];
    nan_lanes[l] = 0;
  }
  int64_t i0 = 0;
  for (; i0 + kLanes <= n; i0 += kLanes) {
    for (int l = 0; l < kLanes; ++l) {
      const opmath_t v = static_cast<opmath_t>(x[i0 + l]);
      los[l] = v < los[l] ? v : los[l];
      his[l] = v > his[l] ? v : his[l];
      nan_lanes[l] += v != v;
    }
  }
  for (; i0 < n; ++i0) {
    const opmath_t v = static_cast<opmath_t>(x[i0]);
    los[0] = v < los[0] ? v : los[0];
    his[0] = v > his[0] ? v : his[0];
    nan_lanes[0] += v != v;
  }
  opmath_t lo = los[0], hi = his[0];
  int64_t nans = nan_lanes[0];
  for (int l = 1; l < kLanes; ++l) {
    lo = los[l] < lo ? los[l] : lo;
    hi = his[l] > hi ? his[l] : hi;
    nans += nan_lanes[l];
  }
  if (k <= nans) return to_key(std::numeric_limits<opmath_t>::quiet_NaN());
  k -= nans;                                   // rank among the non-NaN values
  if (!(hi > lo)) return to_key(hi);           // they are all equal
  int64_t m = 0;
  if (n <= kSmallSelect) {
    for (int64_t i = 0; i < n; ++i) {
      const opmath_t v = static_cast<opmath_t>(x[i]);
      buf[m] = to_key(v);
      m += v == v;
    }
  } else {
    // ~4 values per bucket for small maps, 2048 buckets from 8192 pixels on
    const int64_t bins = std::min<int64_t>(kBins, int64_t(1) << std::max(4, 63 - __builtin_clzll(n) - 2));
    opmath_t scale = static_cast<opmath_t>(bins) / (hi - lo);
    if (!(scale < std::numeric_limits<opmath_t>::infinity())) scale = 0;  // hi - lo overflowed or underflowed
    const int64_t top = bins - 1;
    // Bucket of every value (NaN: bucket `bins`, never chosen), in a loop the compiler vectorises;
    // then counted into four interleaved sub-histograms (see kStride) and gathered by bucket alone.
    const opmath_t ftop = static_cast<opmath_t>(top);
    const int32_t nan_bucket = static_cast<int32_t>(bins);
    for (int64_t i = 0; i < n; ++i) {
      const opmath_t v = static_cast<opmath_t>(x[i]);
      const bool ok = v == v;
      const opmath_t f = ((ok ? v : lo) - lo) * scale;   // in [0, ~bins]
      const int32_t bkt = f < ftop ? static_cast<int32_t>(f) : static_cast<int32_t>(top);
      ids[i] = static_cast<uint16_t>(ok ? bkt : nan_bucket);
    }
    histogram_clear(hist, bins + 1);
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
      ++hist[ids[i]];
      ++hist[kStride + ids[i + 1]];
      ++hist[2 * kStride + ids[i + 2]];
      ++hist[3 * kStride + ids[i + 3]];
    }
    for (; i < n; ++i) ++hist[ids[i]];
    histogram_merge(hist, bins);
    const uint16_t chosen = static_cast<uint16_t>(find_bin(hist, bins, k));
    for (int64_t j = 0; j < n; ++j) {
      vals[m] = static_cast<opmath_t>(x[j]);
      m += ids[j] == chosen;                   // branch-free compaction
    }
    for (int64_t j = 0; j < m; ++j) buf[j] = to_key(vals[j]);
  }
  // Radix digits of the candidates' keys until few are left (or every bit is fixed: all equal).
  int shift = kKeyBits;
  while (m > kSmallSelect && shift > 0) {
    const int bits = std::min(kDigitBits, shift);
    shift -= bits;
    const key_t digit_mask = (key_t(1) << bits) - 1;
    const int64_t bins = int64_t(1) << bits;
    histogram_clear(hist, bins);
    for (int64_t j = 0; j < m; ++j) ++hist[(j & 3) * kStride + ((buf[j] >> shift) & digit_mask)];
    histogram_merge(hist, bins);
    const key_t bin = static_cast<key_t>(find_bin(hist, bins, k));
    int64_t m2 = 0;
    for (int64_t j = 0; j < m; ++j) {
      const key_t key = buf[j];
      buf[m2] = key;
      m2 += ((key >> shift) & digit_mask) == bin;
    }
    m = m2;
  }
  std::nth_element(buf, buf + (m - k), buf + m);
  return buf[m - k];
}

template <typename scalar_t>
void forward_kernel(const at::Tensor& a, at::Tensor& mask, at::Tensor& threshold, int64_t k, double eps) {
  using opmath_t = at::opmath_type<scalar_t>;
  using key_t = typename KeyOf<opmath_t>::type;
  const int64_t n = map_size(a);
  const int64_t maps = a.numel() / n;
  const scalar_t* x = a.const_data_ptr<scalar_t>();
  scalar_t* out = mask.mutable_data_ptr<scalar_t>();
  scalar_t* thr = threshold.mutable_data_ptr<scalar_t>();
  const opmath_t e = static_cast<opmath_t>(eps);
  const int64_t grain = std::max<int64_t>(1, 32768 / n);
  parallel_for(0, maps, grain, [&](int64_t begin, int64_t end) {
    std::vector<key_t> buf(n);
    std::vector<uint32_t> hist(4 * kStride);
    std::vector<uint16_t> ids(n);
    std::vector<opmath_t> vals(n);
    for (int64_t b = begin; b < end; ++b) {
      const scalar_t* xb = x + b * n;
      scalar_t* ob = out + b * n;
      const opmath_t s = from_key<opmath_t>(select_key<scalar_t, opmath_t>(xb, n, k, buf.data(), hist.data(), ids.data(), vals.data()));
      thr[b] = static_cast<scalar_t>(s);  // exact: s is one of the map's values (or +0.0 for a zero)
      for (int64_t i = 0; i < n; ++i) ob[i] = static_cast<scalar_t>(mask_value(s, static_cast<opmath_t>(xb[i]), e));
    }
  });
}

std::tuple<at::Tensor, at::Tensor> topk_mask_cpu(const at::Tensor& activation, int64_t k, double eps,
                                                 c10::string_view grad) {
  check_forward(activation, k, eps, std::string(grad));
  TORCH_CHECK(activation.device().is_cpu(), "topk_mask (CPU kernel): activation must be on the CPU");
  const at::Tensor a = activation.contiguous();
  at::Tensor mask = at::empty(a.sizes(), a.options());
  at::Tensor threshold = at::empty(a.sizes().slice(0, a.dim() - 2), a.options());
  if (a.numel() == 0) return {mask, threshold};
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, a.scalar_type(), "topk_mask_cpu",
                                  [&] { forward_kernel<scalar_t>(a, mask, threshold, k, eps); });
  return {mask, threshold};
}

// Sum of term(i), i < n, in double with eight independent accumulators (a single one would make the
// loop wait on the add latency every element).
template <typename Term>
inline double sum_double(int64_t n, const Term& term) {
  double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    for (int l = 0; l < 8; ++l) acc[l] += term(i + l);
  }
  for (; i < n; ++i) acc[0] += term(i);
  return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

template <typename scalar_t>
void backward_kernel(const at::Tensor& g, const at::Tensor& a, const at::Tensor& threshold, at::Tensor& out,
                     double eps, bool exact) {
  using opmath_t = at::opmath_type<scalar_t>;
  const int64_t n = map_size(a);
  const int64_t maps = a.numel() / n;
  const scalar_t* gp = g.const_data_ptr<scalar_t>();
  const scalar_t* xp = a.const_data_ptr<scalar_t>();
  const scalar_t* tp = threshold.const_data_ptr<scalar_t>();
  scalar_t* op = out.mutable_data_ptr<scalar_t>();
  const opmath_t e = static_cast<opmath_t>(eps);
  const opmath_t nan = std::numeric_limits<opmath_t>::quiet_NaN();
  const int64_t grain = std::max<int64_t>(1, 32768 / n);
  parallel_for(0, maps, grain, [&](int64_t begin, int64_t end) {
    std::vector<double> contrib(exact ? n : 0);
    for (int64_t b = begin; b < end; ++b) {
      const scalar_t* gb = gp + b * n;
      const scalar_t* xb = xp + b * n;
      scalar_t* ob = op + b * n;
      if (!exact) {
        // straight-through: -(g - mean(g)); the sum in double whatever the dtype
        const opmath_t mean = static_cast<opmath_t>(
            sum_double(n, [&](int64_t i) { return static_cast<double>(static_cast<opmath_t>(gb[i])); }) /
            static_cast<double>(n));
        for (int64_t i = 0; i < n; ++i) ob[i] = static_cast<scalar_t>(mean - static_cast<opmath_t>(gb[i]));
        continue;
      }
      // in double: the pixel at s receives the sum of every other pixel's term, and float32 terms
      // (each d = s - x rounded) can leave that sum ~1e-5 off in relative terms
      const double s = static_cast<double>(tp[b]);
      if (std::isnan(s)) {
        for (int64_t i = 0; i < n; ++i) ob[i] = static_cast<scalar_t>(nan);
        continue;
      }
      // g_i * dM_i/ds for the pixels below s, with selects rather than branches (which mispredict around
      // s); x >= s is evaluated at x = s, where the weight is 1/eps (no inf, no subnormal), then dropped
      int64_t ties = 0;
      const double ed = static_cast<double>(e);
      for (int64_t i = 0; i < n; ++i) {
        const double x = static_cast<double>(xb[i]);
        const bool below = x < s;
        const double c = static_cast<double>(gb[i]) * exact_weight(s, below ? x : s, ed);
        contrib[i] = below ? c : 0.0;
        ties += x == s;
      }
      // summed over the map, shared by the pixels equal to s
      const double through_s = sum_double(n, [&](int64_t i) { return contrib[i]; });
      const double share = through_s / static_cast<double>(std::max<int64_t>(ties, 1));
      for (int64_t i = 0; i < n; ++i) {
        const double x = static_cast<double>(xb[i]);
        const double other = x == s ? share : (x != x ? static_cast<double>(nan) : 0.0);
        ob[i] = static_cast<scalar_t>(x < s ? -contrib[i] : other);
      }
    }
  });
}

at::Tensor topk_mask_backward_cpu(const at::Tensor& grad, const at::Tensor& activation, const at::Tensor& threshold,
                                  double eps, c10::string_view grad_mode) {
  check_backward(grad, activation, threshold, eps, std::string(grad_mode));
  TORCH_CHECK(activation.device().is_cpu(), "topk_mask_backward (CPU kernel): tensors must be on the CPU");
  const at::Tensor a = activation.contiguous();
  const at::Tensor g = grad.to(a.scalar_type()).contiguous();
  const at::Tensor t = threshold.to(a.scalar_type()).contiguous();
  at::Tensor out = at::empty(a.sizes(), a.options());
  if (a.numel() == 0) return out;
  const bool exact = grad_mode == "exact";
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, a.scalar_type(), "topk_mask_backward_cpu",
                                  [&] { backward_kernel<scalar_t>(g, a, t, out, eps, exact); });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(reconad, CPU, m) {
  m.impl("topk_mask", &topk_mask_cpu);
  m.impl("topk_mask_backward", &topk_mask_backward_cpu);
}

}  // namespace topk_mask
}  // namespace reconad
