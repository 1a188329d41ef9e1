// CUDA kernel of reconad::pro_curve (definition in reconad/ops/pro_curve.py).
//
// 1. Connected components (8-connectivity, never across images): union-find over global pixel indices with
//    atomicMin unions (Allegretti et al.), then compression; region sizes by atomicAdd at the roots.
// 2. Order-preserving keys of the scores; 2^16-bin histograms of all / anomalous pixels (global atomics).
// 3. The host finds the cut bin (first normal pixel past the FPR limit) from the 256 KiB histogram.
// 4. Only pixels at or above the cut are compacted (warp-aggregated) and sorted: cub radix sort, descending,
//    on (key - cut key) with only the bits that range needs.
// 5. cub ReduceByKey over equal keys (one curve point each) -> scan -> per-point trapezoid terms -> sum;
//    the crossing segment is cut at the limit on the host, as the official code does.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <cub/cub.cuh>

#include <cstdint>
#include <vector>

#include "pro_curve/pro_curve.h"

namespace reconad {
namespace {

using namespace pro_curve_detail;

constexpr int kHistBits = 16;
constexpr int kHistBins = 1 << kHistBits;
constexpr int kThreads = 256;

__device__ __forceinline__ uint32_t dkey(float v) {
  v = v + 0.0f;  // -0.0 -> +0.0
  const uint32_t b = __float_as_uint(v);
  return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
}
__device__ __forceinline__ uint64_t dkey(double v) {
  v = v + 0.0;
  const uint64_t b = static_cast<uint64_t>(__double_as_longlong(v));
  return (b & 0x8000000000000000ull) ? ~b : (b | 0x8000000000000000ull);
}

int blocks_for(int64_t n) {
  const int64_t b = (n + kThreads - 1) / kThreads;
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(b, 65535 * 8)));
}

// ---- connected components ---------------------------------------------------------------------------------
__global__ void cc_init(const uint8_t* __restrict__ m, int32_t* __restrict__ L, int64_t total) {
  for (int64_t g = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; g < total; g += int64_t(gridDim.x) * blockDim.x)
    L[g] = m[g] ? static_cast<int32_t>(g) : -1;
}

__device__ __forceinline__ int32_t cc_find(const int32_t* L, int32_t x) {
  int32_t p = L[x];
  while (p != x) {
    x = p;
    p = L[x];
  }
  return x;
}

__device__ void cc_union(int32_t* L, int32_t a, int32_t b) {
  bool done;
  do {
    a = cc_find(L, a);
    b = cc_find(L, b);
    if (a < b) {
      const int32_t old = atomicMin(&L[b], a);
      done = old == b;
      b = old;
    } else if (b < a) {
      const int32_t old = atomicMin(&L[a], b);
      done = old == a;
      a = old;
    } else {
      done = true;
    }
  } while (!done);
}

__global__ void cc_merge(const uint8_t* __restrict__ m, int32_t* L, int64_t total, int64_t H, int64_t W) {
  const int64_t HW = H * W;
  for (int64_t g = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; g < total; g += int64_t(gridDim.x) * blockDim.x) {
    if (!m[g]) continue;
    const int64_t p = g % HW, y = p / W, x = p % W;
    if (x > 0 && m[g - 1]) cc_union(L, int32_t(g), int32_t(g - 1));
    if (y > 0) {
      const int64_t up = g - W;
      if (m[up]) cc_union(L, int32_t(g), int32_t(up));
      if (x > 0 && m[up - 1]) cc_union(L, int32_t(g), int32_t(up - 1));
      if (x + 1 < W && m[up + 1]) cc_union(L, int32_t(g), int32_t(up + 1));
    }
  }
}

__global__ void cc_compress_count(const uint8_t* __restrict__ m, int32_t* L, int32_t* __restrict__ size,
                                  unsigned long long* n_regions, int64_t total) {
  for (int64_t g = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; g < total; g += int64_t(gridDim.x) * blockDim.x) {
    if (!m[g]) continue;
    const int32_t r = cc_find(L, int32_t(g));
    L[g] = r;
    atomicAdd(&size[r], 1);
    if (r == g) atomicAdd(n_regions, 1ull);
  }
}

// ---- keys and histograms ----------------------------------------------------------------------------------
template <typename T, typename K>
__global__ void key_hist(const T* __restrict__ s, const uint8_t* __restrict__ m, uint32_t* __restrict__ hist_all,
                         uint32_t* __restrict__ hist_anom, int* nan_flag, int64_t total) {
  constexpr int shift = 8 * sizeof(K) - kHistBits;
  for (int64_t g = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; g < total; g += int64_t(gridDim.x) * blockDim.x) {
    const T v = s[g];
    if (v != v) *nan_flag = 1;
    const K k = dkey(v);
    const uint32_t bin = static_cast<uint32_t>(k >> shift);
    atomicAdd(&hist_all[bin], 1u);
    if (m[g]) atomicAdd(&hist_anom[bin], 1u);
  }
}

// ---- compaction of the candidates (warp-aggregated: one atomic per warp) --------------------------------------
template <typename T, typename K>
__global__ void compact(const T* __restrict__ s, const uint8_t* __restrict__ m, const int32_t* __restrict__ L,
                        const int32_t* __restrict__ size, K cut_key, K* __restrict__ keys,
                        uint32_t* __restrict__ payload, unsigned long long* count, int64_t total) {
  const int lane = threadIdx.x & 31;
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  // the loop bound is tested on the warp's first index, so whole warps iterate together (ballot is safe)
  for (int64_t base = blockIdx.x * int64_t(blockDim.x) + threadIdx.x - lane; base < total; base += stride) {
    const int64_t g = base + lane;
    bool take = false;
    K k = 0;
    if (g < total) {
      k = dkey(s[g]);
      take = k >= cut_key;
    }
    const unsigned mask = __ballot_sync(0xffffffffu, take);
    if (mask == 0) continue;
    const int leader = __ffs(mask) - 1;
    unsigned long long start = 0;
    if (lane == leader) start = atomicAdd(count, static_cast<unsigned long long>(__popc(mask)));
    start = __shfl_sync(0xffffffffu, start, leader);
    if (take) {
      const unsigned long long pos = start + __popc(mask & ((1u << lane) - 1u));
      keys[pos] = k - cut_key;
      payload[pos] = m[g] ? static_cast<uint32_t>(size[L[g]]) : 0u;
    }
  }
}

// ---- one curve point per distinct key -------------------------------------------------------------------------
struct FW {  // normal pixels and sum of 1 / region size
  long long fp;
  double w;
};
struct FWSum {
  __host__ __device__ __forceinline__ FW operator()(const FW& a, const FW& b) const { return {a.fp + b.fp, a.w + b.w}; }
};

__global__ void to_fw(const uint32_t* __restrict__ payload, FW* __restrict__ out, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const uint32_t p = payload[i];
    out[i] = p == 0 ? FW{1, 0.0} : FW{0, 1.0 / static_cast<double>(p)};
  }
}

// term_k = (P_{k-1} + P_k) (FP_k - FP_{k-1}) while FP_k <= kcount (the area is their sum / (2 n R));
// the first point past the limit is recorded for the host.
__global__ void area_terms(const FW* __restrict__ cum, const int* __restrict__ n_runs, long long kcount,
                           double* __restrict__ terms, int* crossing) {
  const int n = *n_runs;
  for (int64_t k = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; k < n; k += int64_t(gridDim.x) * blockDim.x) {
    const FW c = cum[k];
    const FW p = k > 0 ? cum[k - 1] : FW{0, 0.0};
    if (c.fp <= kcount) {
      terms[k] = (p.w + c.w) * static_cast<double>(c.fp - p.fp);
    } else {
      terms[k] = 0.0;
      if (p.fp <= kcount) *crossing = static_cast<int>(k);
    }
  }
}

__global__ void curve_points(const FW* __restrict__ cum, int64_t npts, double n_normal, double n_regions,
                             double* __restrict__ fpr, double* __restrict__ pro) {
  for (int64_t k = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; k < npts; k += int64_t(gridDim.x) * blockDim.x) {
    const FW c = cum[k];
    fpr[k + 1] = fmin(fmax(static_cast<double>(c.fp) / n_normal, 0.0), 1.0);
    pro[k + 1] = fmin(fmax(c.w / n_regions, 0.0), 1.0);
    if (k == 0) {
      fpr[0] = 0.0;
      pro[0] = 0.0;
    }
  }
}

at::Tensor temp_bytes(size_t n, const at::Tensor& like) {
  return at::empty({static_cast<int64_t>(std::max<size_t>(n, 1))}, like.options().dtype(at::kByte));
}

template <typename T>
std::tuple<at::Tensor, at::Tensor, at::Tensor> pro_curve_cuda_impl(const at::Tensor& maps, const at::Tensor& masks,
                                                                   double limit, bool return_curve) {
  using K = typename KeyOf<T>::type;
  constexpr int kShift = 8 * sizeof(K) - kHistBits;
  const int64_t N = maps.size(0), H = maps.size(1), W = maps.size(2), total = N * H * W;
  TORCH_CHECK(total < (int64_t(1) << 31) - 1, "pro_curve (CUDA): at most 2^31 - 2 pixels per call, got ", total);
  auto stream = c10::cuda::getCurrentCUDAStream();
  const auto dev = maps.options();
  const auto f64 = dev.dtype(at::kDouble);
  const T* s = maps.data_ptr<T>();
  const uint8_t* m = static_cast<const uint8_t*>(masks.data_ptr());
  const int grid = blocks_for(total);

  auto stats_out = [&](double area, int64_t nn, int64_t nr) {
    at::Tensor st = at::empty({3}, f64.device(at::kCPU));
    st[0] = area;
    st[1] = static_cast<double>(nn);
    st[2] = static_cast<double>(nr);
    return st.to(maps.device());
  };
  if (total == 0) return {at::empty({0}, f64), at::empty({0}, f64), stats_out(0.0, 0, 0)};

  // 1. labels
  at::Tensor L = at::empty({total}, dev.dtype(at::kInt));
  at::Tensor size = at::zeros({total}, dev.dtype(at::kInt));
  at::Tensor counters = at::zeros({2}, dev.dtype(at::kLong));  // [regions, candidates]
  auto* cnt = reinterpret_cast<unsigned long long*>(counters.data_ptr<int64_t>());
  int32_t* Lp = L.data_ptr<int32_t>();
  cc_init<<<grid, kThreads, 0, stream>>>(m, Lp, total);
  cc_merge<<<grid, kThreads, 0, stream>>>(m, Lp, total, H, W);
  cc_compress_count<<<grid, kThreads, 0, stream>>>(m, Lp, size.data_ptr<int32_t>(), cnt, total);

  // 2. histograms
  at::Tensor hist = at::zeros({2, kHistBins}, dev.dtype(at::kInt));
  at::Tensor nan_flag = at::zeros({1}, dev.dtype(at::kInt));
  uint32_t* h_all = reinterpret_cast<uint32_t*>(hist.data_ptr<int32_t>());
  key_hist<T, K><<<grid, kThreads, 0, stream>>>(s, m, h_all, h_all + kHistBins, nan_flag.data_ptr<int>(), total);
  C10_CUDA_KERNEL_LAUNCH_CHECK();

  // 3. cut (host)
  const at::Tensor hist_h = hist.cpu();
  TORCH_CHECK_VALUE(nan_flag.item<int>() == 0, "pro_curve: anomaly_maps contain NaN");
  const int64_t n_regions = counters[0].item<int64_t>();
  const uint32_t* ha = reinterpret_cast<const uint32_t*>(hist_h.data_ptr<int32_t>());
  std::vector<int64_t> normal(kHistBins);
  int64_t n_normal = 0, top_bin = 0;
  for (int b = 0; b < kHistBins; ++b) {
    normal[b] = int64_t(ha[b]) - int64_t(ha[kHistBins + b]);
    n_normal += normal[b];
    if (ha[b]) top_bin = b;
  }
  if (n_normal == 0 || n_regions == 0)
    return {at::empty({0}, f64), at::empty({0}, f64), stats_out(0.0, n_normal, n_regions)};
  const int64_t kcount = max_normal_count(limit, n_normal);
  int64_t cut_bin = 0;
  if (kcount < n_normal) {
    int64_t cum = 0;
    for (int64_t b = kHistBins - 1; b >= 0; --b) {
      cum += normal[b];
      if (cum > kcount) {
        cut_bin = b;
        break;
      }
    }
  }
  int64_t M = 0;
  for (int64_t b = cut_bin; b < kHistBins; ++b) M += ha[b];
  const K cut_key = K(cut_bin) << kShift;
  const K range = ((K(top_bin) << kShift) | ((K(1) << kShift) - 1)) - cut_key;
  int end_bit = 0;
  while (end_bit < int(8 * sizeof(K)) && (range >> end_bit) != 0) ++end_bit;
  end_bit = std::max(end_bit, 1);

  // 4. compact + sort (descending)
  const auto key_dtype = sizeof(K) == 4 ? at::kInt : at::kLong;
  at::Tensor keys = at::empty({M}, dev.dtype(key_dtype)), keys_s = at::empty({M}, dev.dtype(key_dtype));
  at::Tensor pay = at::empty({M}, dev.dtype(at::kInt)), pay_s = at::empty({M}, dev.dtype(at::kInt));
  K* kp = reinterpret_cast<K*>(keys.data_ptr());
  K* kps = reinterpret_cast<K*>(keys_s.data_ptr());
  uint32_t* pp = reinterpret_cast<uint32_t*>(pay.data_ptr<int32_t>());
  uint32_t* pps = reinterpret_cast<uint32_t*>(pay_s.data_ptr<int32_t>());
  compact<T, K><<<grid, kThreads, 0, stream>>>(s, m, Lp, size.data_ptr<int32_t>(), cut_key, kp, pp, cnt + 1, total);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  L = at::Tensor();
  size = at::Tensor();
  const int Mi = static_cast<int>(M);
  size_t bytes = 0;
  cub::DeviceRadixSort::SortPairsDescending(nullptr, bytes, kp, kps, pp, pps, Mi, 0, end_bit, stream);
  at::Tensor tmp = temp_bytes(bytes, maps);
  cub::DeviceRadixSort::SortPairsDescending(tmp.data_ptr(), bytes, kp, kps, pp, pps, Mi, 0, end_bit, stream);

  // 5. points, scan, area terms
  at::Tensor fw = at::empty({M * int64_t(sizeof(FW))}, dev.dtype(at::kByte));
  at::Tensor runs = at::empty({M * int64_t(sizeof(FW))}, dev.dtype(at::kByte));
  at::Tensor ukeys = at::empty({M}, dev.dtype(key_dtype));
  at::Tensor nruns = at::zeros({1}, dev.dtype(at::kInt));
  FW* fwp = reinterpret_cast<FW*>(fw.data_ptr());
  FW* rp = reinterpret_cast<FW*>(runs.data_ptr());
  to_fw<<<blocks_for(M), kThreads, 0, stream>>>(pps, fwp, M);
  bytes = 0;
  cub::DeviceReduce::ReduceByKey(nullptr, bytes, kps, reinterpret_cast<K*>(ukeys.data_ptr()), fwp, rp,
                                 nruns.data_ptr<int>(), FWSum(), Mi, stream);
  tmp = temp_bytes(bytes, maps);
  cub::DeviceReduce::ReduceByKey(tmp.data_ptr(), bytes, kps, reinterpret_cast<K*>(ukeys.data_ptr()), fwp, rp,
                                 nruns.data_ptr<int>(), FWSum(), Mi, stream);
  const int U = nruns.item<int>();
  FW* cum = fwp;  // reuse: inclusive scan of the runs
  bytes = 0;
  cub::DeviceScan::InclusiveScan(nullptr, bytes, rp, cum, FWSum(), U, stream);
  tmp = temp_bytes(bytes, maps);
  cub::DeviceScan::InclusiveScan(tmp.data_ptr(), bytes, rp, cum, FWSum(), U, stream);

  at::Tensor terms = at::empty({std::max(U, 1)}, f64);
  at::Tensor crossing = at::full({1}, -1, dev.dtype(at::kInt));
  area_terms<<<blocks_for(U), kThreads, 0, stream>>>(cum, nruns.data_ptr<int>(), kcount, terms.data_ptr<double>(),
                                                     crossing.data_ptr<int>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  at::Tensor area_sum = at::zeros({1}, f64);
  bytes = 0;
  cub::DeviceReduce::Sum(nullptr, bytes, terms.data_ptr<double>(), area_sum.data_ptr<double>(), U, stream);
  tmp = temp_bytes(bytes, maps);
  cub::DeviceReduce::Sum(tmp.data_ptr(), bytes, terms.data_ptr<double>(), area_sum.data_ptr<double>(), U, stream);

  const double nn = static_cast<double>(n_normal), nr = static_cast<double>(n_regions);
  double area = area_sum.item<double>() * 0.5 / (nn * nr);
  const int xk = crossing.item<int>();
  if (xk >= 0) {  // the official cut of the crossing segment at the limit
    FW pair[2] = {{0, 0.0}, {0, 0.0}};
    const int first = xk > 0 ? xk - 1 : xk;
    C10_CUDA_CHECK(cudaMemcpyAsync(pair + (xk > 0 ? 0 : 1), cum + first, (xk > 0 ? 2 : 1) * sizeof(FW),
                                   cudaMemcpyDeviceToHost, stream));
    C10_CUDA_CHECK(cudaStreamSynchronize(stream));
    area += crossing_area(limit, pair[0].fp, pair[0].w, pair[1].fp, pair[1].w, n_normal, n_regions);
  }
  at::Tensor fpr = at::empty({0}, f64), pro = at::empty({0}, f64);
  if (return_curve) {
    const int64_t npts = xk >= 0 ? int64_t(xk) + 1 : int64_t(U);
    fpr = at::empty({npts + 1}, f64);
    pro = at::empty({npts + 1}, f64);
    curve_points<<<blocks_for(npts), kThreads, 0, stream>>>(cum, npts, nn, nr, fpr.data_ptr<double>(),
                                                            pro.data_ptr<double>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
  return {fpr, pro, stats_out(area, n_normal, n_regions)};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> pro_curve_cuda(const at::Tensor& anomaly_maps,
                                                              const at::Tensor& masks, double fpr_limit,
                                                              bool return_curve) {
  check_inputs(anomaly_maps, masks, fpr_limit);
  const c10::cuda::CUDAGuard guard(anomaly_maps.device());
  const at::Tensor maps = anomaly_maps.contiguous();
  const at::Tensor m = masks.contiguous();
  return maps.scalar_type() == at::kFloat ? pro_curve_cuda_impl<float>(maps, m, fpr_limit, return_curve)
                                          : pro_curve_cuda_impl<double>(maps, m, fpr_limit, return_curve);
}

}  // namespace

TORCH_LIBRARY_IMPL(reconad, CUDA, m) { m.impl("pro_curve", &pro_curve_cuda); }

}  // namespace reconad
