// CUDA kernels of reconad::topk_mask.
//
// Forward: one CTA per map, one launch. The map is staged once in shared memory, in its own dtype, when
// it fits the opt-in limit (227 KiB on an H100 less ~12 KiB static: ~55K float32 pixels, e.g. 224x224;
// ~110K float16), else every pass re-reads it from global memory (L2). A radix select over the
// order-preserving keys of topk_mask.h then finds the k-th largest with 11-bit digits, most
// significant first (3 passes for 32-bit keys, 6 for 64-bit): each pass histograms
// the digit of the keys that match the prefix found so far (shared-memory atomics, aggregated per warp
// over equal digits so ties do not serialise), then a block scan over the 2048 bins from the top finds
// the digit holding the k-th largest. The same kernel then writes eq. 2 and the threshold.
//
// Backward: one CTA per map: one block reduction in double (sum of g for "ste"; sum of g * dM/ds below s
// and the tie count for "exact"; deterministic) and one elementwise pass.
#include <ATen/ATen.h>
#include <ATen/OpMathType.h>
// c10/cuda only (not ATen/cuda/CUDAContext.h, which pulls in cuSPARSE/cuBLAS headers this op never uses)
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <cub/block/block_reduce.cuh>
#include <cub/block/block_scan.cuh>

#include <limits>

#include "topk_mask/topk_mask.h"

namespace reconad {
namespace topk_mask {
namespace {

constexpr unsigned kFullMask = 0xFFFFFFFFu;

template <typename scalar_t, int BLOCK, bool STAGED>
__global__ void __launch_bounds__(BLOCK)
    forward_kernel(const scalar_t* __restrict__ x, scalar_t* __restrict__ mask, scalar_t* __restrict__ threshold,
                   int n, int k, at::opmath_type<scalar_t> eps) {
  using opmath_t = at::opmath_type<scalar_t>;
  using key_t = typename KeyOf<opmath_t>::type;
  using Scan = cub::BlockScan<int, BLOCK>;
  constexpr int kKeyBits = 8 * sizeof(key_t);
  constexpr int kItems = kBins / BLOCK;  // bins per thread in the scan
  constexpr int kUnroll = STAGED ? 2 : 8;  // elements per thread per step

  extern __shared__ __align__(16) unsigned char staged_raw[];
  __shared__ int hist[kBins];
  __shared__ typename Scan::TempStorage scan_storage;
  __shared__ int chosen_digit;
  __shared__ int chosen_rank;

  const int tid = threadIdx.x;
  const int lane = tid & 31;
  const int64_t map = blockIdx.x;
  const scalar_t* xm = x + map * static_cast<int64_t>(n);
  scalar_t* mm = mask + map * static_cast<int64_t>(n);
  const scalar_t* src = xm;
  if (STAGED) {
    scalar_t* staged = reinterpret_cast<scalar_t*>(staged_raw);
    for (int i = tid; i < n; i += BLOCK) staged[i] = xm[i];
    src = staged;
    __syncthreads();
  }

  key_t prefix = 0;       // digits found so far
  key_t prefix_mask = 0;  // their bits
  int rank = k;           // rank (from the top) of the wanted key among those matching the prefix
  for (int shift = kKeyBits; shift > 0;) {
    const int bits = shift < kDigitBits ? shift : kDigitBits;
    shift -= bits;
    const key_t digit_mask = (key_t(1) << bits) - 1;
    for (int j = tid; j < kBins; j += BLOCK) hist[j] = 0;
    __syncthreads();
    // kUnroll loads in flight per thread before the atomics (the unstaged path is latency-bound), and a
    // warp-uniform trip count, so that every lane reaches the warp votes below
    for (int base = 0; base < n; base += BLOCK * kUnroll) {
      key_t keys[kUnroll];
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {
        const int i = base + u * BLOCK + tid;
        keys[u] = i < n ? to_key(static_cast<opmath_t>(src[i])) : key_t(0);
      }
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {
        const bool want = base + u * BLOCK + tid < n && (keys[u] & prefix_mask) == prefix;
        const int digit = static_cast<int>((keys[u] >> shift) & digit_mask);
        const unsigned voters = __ballot_sync(kFullMask, want);
        if (want) {
          const unsigned peers = __match_any_sync(voters, digit);
          if (lane == __ffs(peers) - 1) atomicAdd(&hist[digit], __popc(peers));
        }
      }
    }
    __syncthreads();
    // Descending order: thread t holds bins kBins-1-(t*kItems+j); the exclusive sum is the count of
    // keys in higher bins. Exactly one bin has above < rank <= above + count.
    int counts[kItems];
    int above[kItems];
#pragma unroll
    for (int j = 0; j < kItems; ++j) counts[j] = hist[kBins - 1 - (tid * kItems + j)];
    Scan(scan_storage).ExclusiveSum(counts, above);
#pragma unroll
    for (int j = 0; j < kItems; ++j) {
      if (above[j] < rank && above[j] + counts[j] >= rank) {
        chosen_digit = kBins - 1 - (tid * kItems + j);
        chosen_rank = rank - above[j];
      }
    }
    __syncthreads();
    prefix |= static_cast<key_t>(chosen_digit) << shift;
    prefix_mask |= digit_mask << shift;
    rank = chosen_rank;
    __syncthreads();  // everyone has read chosen_* before the next pass may overwrite them
  }

  const opmath_t s = from_key<opmath_t>(prefix);
  if (tid == 0) threshold[map] = static_cast<scalar_t>(s);
  for (int base = 0; base < n; base += BLOCK * kUnroll) {
    opmath_t v[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int i = base + u * BLOCK + tid;
      v[u] = i < n ? static_cast<opmath_t>(src[i]) : opmath_t(0);
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int i = base + u * BLOCK + tid;
      if (i < n) mm[i] = static_cast<scalar_t>(mask_value(s, v[u], eps));
    }
  }
}

template <typename scalar_t, int BLOCK, bool STAGED>
void launch_forward_variant(const at::Tensor& a, at::Tensor& mask, at::Tensor& threshold, int n, int k, double eps,
                            int64_t maps, size_t staged_bytes, cudaStream_t stream) {
  using opmath_t = at::opmath_type<scalar_t>;
  auto kernel = forward_kernel<scalar_t, BLOCK, STAGED>;
  if (STAGED) {  // above 48 KiB (static + dynamic) the limit must be raised explicitly
    C10_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                        static_cast<int>(staged_bytes)));
  }
  kernel<<<static_cast<unsigned>(maps), BLOCK, STAGED ? staged_bytes : 0, stream>>>(
      a.const_data_ptr<scalar_t>(), mask.mutable_data_ptr<scalar_t>(), threshold.mutable_data_ptr<scalar_t>(), n, k,
      static_cast<opmath_t>(eps));
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

template <typename scalar_t, int BLOCK>
void launch_forward(const at::Tensor& a, at::Tensor& mask, at::Tensor& threshold, int n, int k, double eps,
                    int64_t maps, cudaStream_t stream) {
  const size_t staged_bytes = static_cast<size_t>(n) * sizeof(scalar_t);
  cudaFuncAttributes attr;
  C10_CUDA_CHECK(cudaFuncGetAttributes(&attr, forward_kernel<scalar_t, BLOCK, true>));
  int device = 0;
  int optin = 0;
  C10_CUDA_CHECK(cudaGetDevice(&device));
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
  const size_t limit = static_cast<size_t>(optin);
  if (attr.sharedSizeBytes + staged_bytes <= limit) {
    launch_forward_variant<scalar_t, BLOCK, true>(a, mask, threshold, n, k, eps, maps, staged_bytes, stream);
  } else {
    launch_forward_variant<scalar_t, BLOCK, false>(a, mask, threshold, n, k, eps, maps, 0, stream);
  }
}

std::tuple<at::Tensor, at::Tensor> topk_mask_cuda(const at::Tensor& activation, int64_t k, double eps,
                                                  c10::string_view grad) {
  check_forward(activation, k, eps, std::string(grad));
  TORCH_CHECK(activation.is_cuda(), "topk_mask (CUDA kernel): activation must be a CUDA tensor");
  const c10::cuda::CUDAGuard guard(activation.device());
  const at::Tensor a = activation.contiguous();
  at::Tensor mask = at::empty(a.sizes(), a.options());
  at::Tensor threshold = at::empty(a.sizes().slice(0, a.dim() - 2), a.options());
  if (a.numel() == 0) return {mask, threshold};
  const int n = static_cast<int>(map_size(a));
  const int64_t maps = a.numel() / n;
  TORCH_CHECK(maps <= std::numeric_limits<int>::max(), "topk_mask (CUDA kernel): at most 2^31 - 1 maps, got ", maps);
  cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, a.scalar_type(), "topk_mask_cuda", [&] {
    if (n <= 4096) {
      launch_forward<scalar_t, 256>(a, mask, threshold, n, static_cast<int>(k), eps, maps, stream);
    } else {
      launch_forward<scalar_t, 1024>(a, mask, threshold, n, static_cast<int>(k), eps, maps, stream);
    }
  });
  return {mask, threshold};
}

template <typename scalar_t, int BLOCK>
__global__ void __launch_bounds__(BLOCK)
    backward_kernel(const scalar_t* __restrict__ g, const scalar_t* __restrict__ x,
                    const scalar_t* __restrict__ threshold, scalar_t* __restrict__ out, int n,
                    at::opmath_type<scalar_t> eps, bool exact) {
  using opmath_t = at::opmath_type<scalar_t>;
  using acc_t = double;  // per-map sums in double: T is a small difference of many terms
  using Reduce = cub::BlockReduce<acc_t, BLOCK>;
  using ReduceInt = cub::BlockReduce<int, BLOCK>;
  __shared__ typename Reduce::TempStorage reduce_storage;
  __shared__ typename ReduceInt::TempStorage reduce_int_storage;
  __shared__ acc_t shared_value;

  const int tid = threadIdx.x;
  const int64_t off = static_cast<int64_t>(blockIdx.x) * n;
  const scalar_t* gm = g + off;
  const scalar_t* xm = x + off;
  scalar_t* om = out + off;
  const opmath_t nan = std::numeric_limits<opmath_t>::quiet_NaN();

  if (!exact) {
    // straight-through: -(g - mean(g))
    acc_t sum = 0;
    for (int i = tid; i < n; i += BLOCK) sum += static_cast<acc_t>(static_cast<opmath_t>(gm[i]));
    sum = Reduce(reduce_storage).Sum(sum);
    if (tid == 0) shared_value = sum / static_cast<acc_t>(n);
    __syncthreads();
    const opmath_t mean = static_cast<opmath_t>(shared_value);
    for (int i = tid; i < n; i += BLOCK) om[i] = static_cast<scalar_t>(mean - static_cast<opmath_t>(gm[i]));
    return;
  }
  const opmath_t s = static_cast<opmath_t>(threshold[blockIdx.x]);
  if (s != s) {
    for (int i = tid; i < n; i += BLOCK) om[i] = static_cast<scalar_t>(nan);
    return;
  }
  // d mask_i / d s summed over the pixels below s, shared by the pixels equal to s
  acc_t through_s = 0;
  int ties = 0;
  for (int i = tid; i < n; i += BLOCK) {
    const opmath_t v = static_cast<opmath_t>(xm[i]);
    if (v < s) {
      through_s += static_cast<acc_t>(static_cast<opmath_t>(gm[i]) * exact_weight(s, v, eps));
    } else if (v == s) {
      ++ties;
    }
  }
  through_s = Reduce(reduce_storage).Sum(through_s);
  ties = ReduceInt(reduce_int_storage).Sum(ties);
  if (tid == 0) shared_value = through_s / static_cast<acc_t>(ties > 0 ? ties : 1);
  __syncthreads();
  const opmath_t share = static_cast<opmath_t>(shared_value);
  for (int i = tid; i < n; i += BLOCK) {
    const opmath_t v = static_cast<opmath_t>(xm[i]);
    opmath_t r;
    if (v < s) {
      r = -(static_cast<opmath_t>(gm[i]) * exact_weight(s, v, eps));
    } else if (v == s) {
      r = share;
    } else {
      r = v != v ? nan : opmath_t(0);
    }
    om[i] = static_cast<scalar_t>(r);
  }
}

at::Tensor topk_mask_backward_cuda(const at::Tensor& grad, const at::Tensor& activation,
                                   const at::Tensor& threshold, double eps, c10::string_view grad_mode) {
  check_backward(grad, activation, threshold, eps, std::string(grad_mode));
  TORCH_CHECK(activation.is_cuda(), "topk_mask_backward (CUDA kernel): tensors must be CUDA tensors");
  const c10::cuda::CUDAGuard guard(activation.device());
  const at::Tensor a = activation.contiguous();
  const at::Tensor g = grad.to(a.scalar_type()).contiguous();
  const at::Tensor t = threshold.to(a.scalar_type()).contiguous();
  at::Tensor out = at::empty(a.sizes(), a.options());
  if (a.numel() == 0) return out;
  const int n = static_cast<int>(map_size(a));
  const int64_t maps = a.numel() / n;
  TORCH_CHECK(maps <= std::numeric_limits<int>::max(), "topk_mask_backward (CUDA kernel): at most 2^31 - 1 maps, got ",
              maps);
  const bool exact = grad_mode == "exact";
  cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, a.scalar_type(), "topk_mask_backward_cuda", [&] {
    using opmath_t = at::opmath_type<scalar_t>;
    const auto e = static_cast<opmath_t>(eps);
    if (n <= 4096) {
      backward_kernel<scalar_t, 256><<<static_cast<unsigned>(maps), 256, 0, stream>>>(
          g.const_data_ptr<scalar_t>(), a.const_data_ptr<scalar_t>(), t.const_data_ptr<scalar_t>(),
          out.mutable_data_ptr<scalar_t>(), n, e, exact);
    } else {
      backward_kernel<scalar_t, 1024><<<static_cast<unsigned>(maps), 1024, 0, stream>>>(
          g.const_data_ptr<scalar_t>(), a.const_data_ptr<scalar_t>(), t.const_data_ptr<scalar_t>(),
          out.mutable_data_ptr<scalar_t>(), n, e, exact);
    }
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(reconad, CUDA, m) {
  m.impl("topk_mask", &topk_mask_cuda);
  m.impl("topk_mask_backward", &topk_mask_backward_cuda);
}

}  // namespace topk_mask
}  // namespace reconad
