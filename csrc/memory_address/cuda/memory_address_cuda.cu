// CUDA kernels of reconad::memory_address (see memory_address.h for the definition).
//
// This is the straightforward, correct-first version: SIMT arithmetic in fp32 (fp64 for fp64 inputs)
// with shared-memory tiles, fp16 / bf16 inputs converted on load. No N x K tensor is written to global
// memory:
//   forward      one block per tile of BM query rows; pass 1 streams K in tiles of BK slots with an
//                online log-sum-exp; pass 2 recomputes each score tile, keeps s > lse + ln lambda and
//                accumulates sum p v, sum p and sum p (lse - s) (the entropy comes free).
//   backward dz  one block per query tile, one pass over K (rowsum(dO * O) trick plus the entropy term).
//   backward dM  blocks over (slot tile, split of the query tiles); each writes its partial dK, dV to a
//                small fp32 workspace (splits x K x C) that is summed afterwards: dM is reduced across tiles.
// Every kernel computes a score as the same sequential fma chain over C, so the forward and the
// backward see bit-identical scores and therefore the same support.
// Not done yet: tensor cores (mma / wmma) for bf16 / fp16 and TF32; the score tile is recomputed by
// plain FMA loops from shared memory.
#include "memory_address/memory_address.h"

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <cuda_runtime.h>

namespace reconad::memory_address {
namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;

__device__ __forceinline__ float dexp(float x) { return expf(x); }
__device__ __forceinline__ double dexp(double x) { return exp(x); }
__device__ __forceinline__ float dlog(float x) { return logf(x); }
__device__ __forceinline__ double dlog(double x) { return log(x); }
__device__ __forceinline__ float dfma(float a, float b, float c) { return __fmaf_rn(a, b, c); }
__device__ __forceinline__ double dfma(double a, double b, double c) { return __fma_rn(a, b, c); }
__device__ __forceinline__ float dmax(float a, float b) { return fmaxf(a, b); }
__device__ __forceinline__ double dmax(double a, double b) { return fmax(a, b); }

template <typename A>
__device__ __forceinline__ A warp_sum(A v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
template <typename A>
__device__ __forceinline__ A warp_max(A v) {
  for (int o = 16; o > 0; o >>= 1) v = dmax(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Rows [r0, r0 + rows) of a row-major (n x C) tensor into a shared tile with leading dimension ld;
// rows past n are zero.
template <typename T, typename A>
__device__ void load_rows(A* tile, int ld, const T* __restrict__ src, int64_t r0, int rows, int64_t n, int C) {
  for (int e = threadIdx.x; e < rows * C; e += blockDim.x) {
    const int r = e / C, c = e - r * C;
    tile[r * ld + c] = (r0 + r < n) ? static_cast<A>(src[(r0 + r) * C + c]) : A(0);
  }
}

// The score of a query row against a slot row: one sequential fma chain over c, identical in every
// kernel (see the file comment).
template <typename A>
__device__ __forceinline__ A score(const A* q, const A* k, int C) {
  A s = 0;
  for (int c = 0; c < C; ++c) s = dfma(q[c], k[c], s);
  return s;
}

// The (BM x BK) score tile of the query tile qs against the slot tile ks.
template <typename A>
__device__ void score_tile(A* ss, const A* qs, const A* ks, int ld, int lds, int BM, int BK, int C) {
  for (int e = threadIdx.x; e < BM * BK; e += blockDim.x) {
    const int r = e / BK, j = e - r * BK;
    ss[r * lds + j] = score(qs + r * ld, ks + j * ld, C);
  }
}

template <typename A>
__device__ __forceinline__ A neg_inf() {
  return -static_cast<A>(INFINITY);
}

template <typename T, typename A>
__global__ void __launch_bounds__(kThreads) forward_kernel(
    const T* __restrict__ z, const T* __restrict__ keys, const T* __restrict__ values, T* __restrict__ out,
    A* __restrict__ h_out, A* __restrict__ lse_out, A* __restrict__ lse_s_out, int64_t N, int K, int C, int BM,
    int BK, A log_lambda) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  A* smem = reinterpret_cast<A*>(smem_raw);
  const int ld = C + 1, lds = BK + 1;  // +1: no bank conflicts on column walks
  A* qs = smem;               // BM x ld   query tile
  A* ks = qs + BM * ld;       // BK x ld   key tile
  A* vs = ks + BK * ld;       // BK x ld   value tile
  A* ss = vs + BK * ld;       // BM x lds  scores, then p
  A* acc = ss + BM * lds;     // BM x C    sum p v
  A* row_m = acc + BM * C;    // BM        running max, then lse
  A* row_l = row_m + BM;      // BM        running sum, then sum p over the support
  A* row_g = row_l + BM;      // BM        sum p (lse - s)
  const int64_t r0 = static_cast<int64_t>(blockIdx.x) * BM;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;

  load_rows(qs, ld, z, r0, BM, N, C);
  for (int r = threadIdx.x; r < BM; r += blockDim.x) {
    row_m[r] = neg_inf<A>();
    row_l[r] = 0;
    row_g[r] = 0;
  }
  for (int e = threadIdx.x; e < BM * C; e += blockDim.x) acc[e] = 0;

  // pass 1: online log-sum-exp over the slot tiles
  for (int k0 = 0; k0 < K; k0 += BK) {
    const int kv = min(BK, K - k0);
    __syncthreads();
    load_rows(ks, ld, keys, k0, BK, K, C);
    __syncthreads();
    score_tile(ss, qs, ks, ld, lds, BM, BK, C);
    __syncthreads();
    for (int r = warp; r < BM; r += kWarps) {
      A m = neg_inf<A>();
      for (int j = lane; j < kv; j += 32) m = dmax(m, ss[r * lds + j]);
      const A m_new = dmax(row_m[r], warp_max(m));
      A l = 0;
      for (int j = lane; j < kv; j += 32) l += dexp(ss[r * lds + j] - m_new);
      l = warp_sum(l);
      __syncwarp();
      if (lane == 0) {
        row_l[r] = row_l[r] * dexp(row_m[r] - m_new) + l;
        row_m[r] = m_new;
      }
    }
  }
  __syncthreads();
  for (int r = threadIdx.x; r < BM; r += blockDim.x) {
    row_m[r] = row_m[r] + dlog(row_l[r]);  // lse
    row_l[r] = 0;
  }

  // pass 2: the softmax restricted to s > lse + ln lambda, p = exp(s - lse) (no rescaling needed)
  for (int k0 = 0; k0 < K; k0 += BK) {
    const int kv = min(BK, K - k0);
    __syncthreads();
    load_rows(ks, ld, keys, k0, BK, K, C);
    load_rows(vs, ld, values, k0, BK, K, C);
    __syncthreads();
    score_tile(ss, qs, ks, ld, lds, BM, BK, C);
    __syncthreads();
    for (int r = warp; r < BM; r += kWarps) {
      const A lse = row_m[r];
      const A cut = lse + log_lambda;
      A sp = 0, sg = 0;
      for (int j = lane; j < BK; j += 32) {
        const A s = ss[r * lds + j];
        const bool in = j < kv && s > cut;
        const A p = in ? dexp(s - lse) : A(0);
        ss[r * lds + j] = p;
        sp += p;
        sg += in ? p * (lse - s) : A(0);
      }
      sp = warp_sum(sp);
      sg = warp_sum(sg);
      if (lane == 0) {
        row_l[r] += sp;
        row_g[r] += sg;
      }
    }
    __syncthreads();
    for (int e = threadIdx.x; e < BM * C; e += blockDim.x) {
      const int r = e / C, c = e - r * C;
      A a = acc[e];
      for (int j = 0; j < kv; ++j) a = dfma(ss[r * lds + j], vs[j * ld + c], a);
      acc[e] = a;
    }
  }
  __syncthreads();
  for (int e = threadIdx.x; e < BM * C; e += blockDim.x) {
    const int r = e / C, c = e - r * C;
    if (r0 + r < N) {
      const A l = row_l[r];
      out[(r0 + r) * C + c] = static_cast<T>(l > 0 ? acc[e] / l : A(0));  // empty support reads zeros
    }
  }
  for (int r = threadIdx.x; r < BM; r += blockDim.x) {
    if (r0 + r < N) {
      const A lse = row_m[r], l = row_l[r];
      lse_out[r0 + r] = lse;
      // entropy = sum w (lse_S - s) = sum p (lse - s) / l + log l: no cancellation
      lse_s_out[r0 + r] = l > 0 ? lse + dlog(l) : lse;
      h_out[r0 + r] = l > 0 ? row_g[r] / l + dlog(l) : A(0);
    }
  }
}

// Per-row statistics of the backward, loaded into shared memory: cut (+inf for rows past N, so that
// they have no support), lse_S, mu = sum w s, D = dO . O and the entropy's incoming gradient.
template <typename A>
__device__ void load_row_stats(A* cut, A* lse_s, A* mu, A* dd, A* dh, const A* __restrict__ lse_g,
                               const A* __restrict__ lse_s_g, const A* __restrict__ mu_g, const A* __restrict__ d_g,
                               const A* __restrict__ dh_g, int64_t r0, int BM, int64_t N, A log_lambda) {
  for (int r = threadIdx.x; r < BM; r += blockDim.x) {
    const int64_t n = r0 + r;
    const bool ok = n < N;
    cut[r] = ok ? lse_g[n] + log_lambda : static_cast<A>(INFINITY);
    lse_s[r] = ok ? lse_s_g[n] : A(0);
    mu[r] = ok ? mu_g[n] : A(0);
    dd[r] = ok ? d_g[n] : A(0);
    dh[r] = ok ? dh_g[n] : A(0);
  }
}

// The (BM x BK) tiles of dS = w (g - D - dh (s - mu)) and (when ws is given) of w, from the query and
// dO tiles (qs, gos) and the slot tiles (ks, vs); slots j >= kv are outside the memory.
template <typename A>
__device__ void grad_tile(A* dss, A* ws, const A* qs, const A* gos, const A* ks, const A* vs, int ld, int lds, int BM,
                          int BK, int C, int kv, const A* cut, const A* lse_s, const A* mu, const A* dd, const A* dh) {
  for (int e = threadIdx.x; e < BM * BK; e += blockDim.x) {
    const int r = e / BK, j = e - r * BK;
    const A s = score(qs + r * ld, ks + j * ld, C);
    const A g = score(gos + r * ld, vs + j * ld, C);
    const bool in = j < kv && s > cut[r];
    const A d = s - lse_s[r];
    const A w = in ? dexp(d < A(0) ? d : A(0)) : A(0);
    dss[r * lds + j] = in ? w * (g - dd[r] - dh[r] * (s - mu[r])) : A(0);
    if (ws != nullptr) ws[r * lds + j] = w;
  }
}

template <typename T, typename A>
__global__ void __launch_bounds__(kThreads) backward_dz_kernel(
    const T* __restrict__ go, const T* __restrict__ z, const T* __restrict__ keys, const T* __restrict__ values,
    const A* __restrict__ lse_g, const A* __restrict__ lse_s_g, const A* __restrict__ mu_g,
    const A* __restrict__ d_g, const A* __restrict__ dh_g, T* __restrict__ dz, int64_t N, int K, int C, int BM,
    int BK, A log_lambda) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  A* smem = reinterpret_cast<A*>(smem_raw);
  const int ld = C + 1, lds = BK + 1;
  A* qs = smem;              // BM x ld
  A* gos = qs + BM * ld;     // BM x ld
  A* ks = gos + BM * ld;     // BK x ld
  A* vs = ks + BK * ld;      // BK x ld
  A* dss = vs + BK * ld;     // BM x lds
  A* acc = dss + BM * lds;   // BM x C
  A* cut = acc + BM * C;
  A* lse_s = cut + BM;
  A* mu = lse_s + BM;
  A* dd = mu + BM;
  A* dh = dd + BM;
  const int64_t r0 = static_cast<int64_t>(blockIdx.x) * BM;

  load_rows(qs, ld, z, r0, BM, N, C);
  load_rows(gos, ld, go, r0, BM, N, C);
  load_row_stats(cut, lse_s, mu, dd, dh, lse_g, lse_s_g, mu_g, d_g, dh_g, r0, BM, N, log_lambda);
  for (int e = threadIdx.x; e < BM * C; e += blockDim.x) acc[e] = 0;
  for (int k0 = 0; k0 < K; k0 += BK) {
    const int kv = min(BK, K - k0);
    __syncthreads();
    load_rows(ks, ld, keys, k0, BK, K, C);
    load_rows(vs, ld, values, k0, BK, K, C);
    __syncthreads();
    grad_tile(dss, static_cast<A*>(nullptr), qs, gos, ks, vs, ld, lds, BM, BK, C, kv, cut, lse_s, mu, dd, dh);
    __syncthreads();
    for (int e = threadIdx.x; e < BM * C; e += blockDim.x) {
      const int r = e / C, c = e - r * C;
      A a = acc[e];
      for (int j = 0; j < kv; ++j) a = dfma(dss[r * lds + j], ks[j * ld + c], a);
      acc[e] = a;
    }
  }
  __syncthreads();
  for (int e = threadIdx.x; e < BM * C; e += blockDim.x) {
    const int r = e / C;
    if (r0 + r < N) dz[r0 * C + e] = static_cast<T>(acc[e]);
  }
}

template <typename T, typename A>
__global__ void __launch_bounds__(kThreads) backward_dm_kernel(
    const T* __restrict__ go, const T* __restrict__ z, const T* __restrict__ keys, const T* __restrict__ values,
    const A* __restrict__ lse_g, const A* __restrict__ lse_s_g, const A* __restrict__ mu_g,
    const A* __restrict__ d_g, const A* __restrict__ dh_g, A* __restrict__ dk_parts, A* __restrict__ dv_parts,
    int64_t N, int K, int C, int BM, int BK, A log_lambda) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  A* smem = reinterpret_cast<A*>(smem_raw);
  const int ld = C + 1, lds = BK + 1;
  A* ks = smem;              // BK x ld
  A* vs = ks + BK * ld;      // BK x ld
  A* qs = vs + BK * ld;      // BM x ld
  A* gos = qs + BM * ld;     // BM x ld
  A* dss = gos + BM * ld;    // BM x lds
  A* wss = dss + BM * lds;   // BM x lds
  A* dk = wss + BM * lds;    // BK x C
  A* dv = dk + BK * C;       // BK x C
  A* cut = dv + BK * C;
  A* lse_s = cut + BM;
  A* mu = lse_s + BM;
  A* dd = mu + BM;
  A* dh = dd + BM;
  const int k0 = blockIdx.x * BK;
  const int kv = min(BK, K - k0);
  const int64_t ntiles = (N + BM - 1) / BM;

  load_rows(ks, ld, keys, k0, BK, K, C);
  load_rows(vs, ld, values, k0, BK, K, C);
  for (int e = threadIdx.x; e < BK * C; e += blockDim.x) {
    dk[e] = 0;
    dv[e] = 0;
  }
  for (int64_t t = blockIdx.y; t < ntiles; t += gridDim.y) {
    const int64_t r0 = t * BM;
    __syncthreads();
    load_rows(qs, ld, z, r0, BM, N, C);
    load_rows(gos, ld, go, r0, BM, N, C);
    load_row_stats(cut, lse_s, mu, dd, dh, lse_g, lse_s_g, mu_g, d_g, dh_g, r0, BM, N, log_lambda);
    __syncthreads();
    grad_tile(dss, wss, qs, gos, ks, vs, ld, lds, BM, BK, C, kv, cut, lse_s, mu, dd, dh);
    __syncthreads();
    for (int e = threadIdx.x; e < BK * C; e += blockDim.x) {
      const int j = e / C, c = e - j * C;
      A a = dk[e], b = dv[e];
      for (int r = 0; r < BM; ++r) {
        a = dfma(dss[r * lds + j], qs[r * ld + c], a);
        b = dfma(wss[r * lds + j], gos[r * ld + c], b);
      }
      dk[e] = a;
      dv[e] = b;
    }
  }
  __syncthreads();
  const int64_t base = (static_cast<int64_t>(blockIdx.y) * K + k0) * C;
  for (int e = threadIdx.x; e < kv * C; e += blockDim.x) {
    dk_parts[base + e] = dk[e];
    dv_parts[base + e] = dv[e];
  }
}

// Tile size (BM = BK) for a kernel needing smem(T) bytes: the largest of 32, 16, ... that fits.
template <typename F>
int pick_tile(F smem_bytes, size_t limit, int C, const char* what) {
  for (int t = 32; t >= 1; t /= 2) {
    if (smem_bytes(t) <= limit) return t;
  }
  TORCH_CHECK(false, "memory_address (CUDA): C = ", C, " is too large for the ", what,
              " kernel's shared-memory tiles (", smem_bytes(1), " bytes needed, ", limit, " available)");
  return 1;
}

// Opt-in shared memory per block and SM count of the current device (without ATen/cuda/CUDAContext.h,
// which pulls in the cuSPARSE / cuBLAS headers).
int device_attribute(cudaDeviceAttr attr) {
  int dev = 0, value = 0;
  C10_CUDA_CHECK(cudaGetDevice(&dev));
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&value, attr, dev));
  return value;
}

template <typename K>
void allow_smem(K kernel, size_t bytes) {
  if (bytes > 48 * 1024) {
    C10_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes)));
  }
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> forward_cuda(
    const at::Tensor& z_in, const at::Tensor& keys_in, const at::Tensor& values_in, double shrink_threshold) {
  check_inputs(z_in, keys_in, values_in, shrink_threshold);
  const c10::cuda::CUDAGuard guard(z_in.device());
  const at::Tensor z = z_in.contiguous(), keys = keys_in.contiguous(), values = values_in.contiguous();
  const int64_t N = z.size(0);
  const int K = static_cast<int>(keys.size(0)), C = static_cast<int>(z.size(1));
  const auto stats = z.options().dtype(stats_dtype(z.scalar_type()));
  at::Tensor out = at::empty({N, C}, z.options());
  at::Tensor h = at::empty({N}, stats), lse = at::empty({N}, stats), lse_s = at::empty({N}, stats);
  if (N == 0) return {out, h, lse, lse_s};
  const size_t limit = device_attribute(cudaDevAttrMaxSharedMemoryPerBlockOptin);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, z.scalar_type(), "memory_address_cuda", [&] {
    using A = at::opmath_type<scalar_t>;
    auto smem = [&](int t) { return sizeof(A) * (3 * t * (C + 1) + t * (t + 1) + t * C + 3 * t); };
    const int T = pick_tile(smem, limit, C, "forward");
    auto kernel = forward_kernel<scalar_t, A>;
    allow_smem(kernel, smem(T));
    const int64_t blocks = (N + T - 1) / T;
    kernel<<<blocks, kThreads, smem(T), c10::cuda::getCurrentCUDAStream()>>>(
        z.data_ptr<scalar_t>(), keys.data_ptr<scalar_t>(), values.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(),
        h.data_ptr<A>(), lse.data_ptr<A>(), lse_s.data_ptr<A>(), N, K, C, T, T,
        static_cast<A>(log_threshold(shrink_threshold)));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {out, h, lse, lse_s};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> backward_cuda(
    const at::Tensor& grad_out_in, const at::Tensor& grad_h_in, const at::Tensor& z_in, const at::Tensor& keys_in,
    const at::Tensor& values_in, const at::Tensor& out_in, const at::Tensor& h_in, const at::Tensor& lse_in,
    const at::Tensor& lse_s_in, double shrink_threshold) {
  check_backward_inputs(grad_out_in, grad_h_in, z_in, keys_in, values_in, out_in, h_in, lse_in, lse_s_in,
                        shrink_threshold);
  const c10::cuda::CUDAGuard guard(z_in.device());
  const int64_t N = z_in.size(0);
  const int K = static_cast<int>(keys_in.size(0)), C = static_cast<int>(z_in.size(1));
  const auto dt = z_in.scalar_type();
  const auto sd = stats_dtype(dt);
  const at::Tensor z = z_in.contiguous(), keys = keys_in.contiguous(), values = values_in.contiguous();
  const at::Tensor go = grad_out_in.to(dt).contiguous();
  at::Tensor dz = at::empty({N, C}, z.options());
  if (N == 0) return {dz, at::zeros({K, C}, z.options()), at::zeros({K, C}, z.options())};
  // Row quantities of size N, cheap in ATen: D = dO . O (the rowsum(dO * O) trick) and mu = lse_S - H.
  const at::Tensor lse = lse_in.to(sd).contiguous(), lse_s = lse_s_in.to(sd).contiguous();
  const at::Tensor mu = (lse_s - h_in.to(sd)).contiguous();
  const at::Tensor dd = (go.to(sd) * out_in.to(sd)).sum(1).contiguous();
  const at::Tensor dh = grad_h_in.to(sd).contiguous();
  const size_t limit = device_attribute(cudaDevAttrMaxSharedMemoryPerBlockOptin);
  const int sms = device_attribute(cudaDevAttrMultiProcessorCount);
  at::Tensor dk, dv;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, dt, "memory_address_backward_cuda", [&] {
    using A = at::opmath_type<scalar_t>;
    const A log_lambda = static_cast<A>(log_threshold(shrink_threshold));
    auto stream = c10::cuda::getCurrentCUDAStream();
    {
      auto smem = [&](int t) { return sizeof(A) * (4 * t * (C + 1) + t * (t + 1) + t * C + 5 * t); };
      const int T = pick_tile(smem, limit, C, "backward (dz)");
      auto kernel = backward_dz_kernel<scalar_t, A>;
      allow_smem(kernel, smem(T));
      kernel<<<(N + T - 1) / T, kThreads, smem(T), stream>>>(
          go.data_ptr<scalar_t>(), z.data_ptr<scalar_t>(), keys.data_ptr<scalar_t>(), values.data_ptr<scalar_t>(),
          lse.data_ptr<A>(), lse_s.data_ptr<A>(), mu.data_ptr<A>(), dd.data_ptr<A>(), dh.data_ptr<A>(),
          dz.data_ptr<scalar_t>(), N, K, C, T, T, log_lambda);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
    {
      auto smem = [&](int t) { return sizeof(A) * (4 * t * (C + 1) + 2 * t * (t + 1) + 2 * t * C + 5 * t); };
      const int T = pick_tile(smem, limit, C, "backward (dM)");
      const int64_t ktiles = (K + T - 1) / T, ntiles = (N + T - 1) / T;
      // enough blocks to fill the GPU twice over; each split adds one K x C partial to sum
      const int64_t splits = std::max<int64_t>(1, std::min<int64_t>(ntiles, (2 * sms + ktiles - 1) / ktiles));
      at::Tensor dk_parts = at::empty({splits, K, C}, z.options().dtype(sd));
      at::Tensor dv_parts = at::empty({splits, K, C}, z.options().dtype(sd));
      auto kernel = backward_dm_kernel<scalar_t, A>;
      allow_smem(kernel, smem(T));
      const dim3 grid(static_cast<unsigned>(ktiles), static_cast<unsigned>(splits));
      kernel<<<grid, kThreads, smem(T), stream>>>(
          go.data_ptr<scalar_t>(), z.data_ptr<scalar_t>(), keys.data_ptr<scalar_t>(), values.data_ptr<scalar_t>(),
          lse.data_ptr<A>(), lse_s.data_ptr<A>(), mu.data_ptr<A>(), dd.data_ptr<A>(), dh.data_ptr<A>(),
          dk_parts.data_ptr<A>(), dv_parts.data_ptr<A>(), N, K, C, T, T, log_lambda);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
      dk = dk_parts.sum(0).to(dt);
      dv = dv_parts.sum(0).to(dt);
    }
  });
  return {dz, dk, dv};
}

}  // namespace

TORCH_LIBRARY_IMPL(reconad, CUDA, m) {
  m.impl("memory_address", &forward_cuda);
  m.impl("memory_address_backward", &backward_cuda);
}

}  // namespace reconad::memory_address
