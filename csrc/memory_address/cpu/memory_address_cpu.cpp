// CPU kernel of reconad::memory_address: one at::parallel_for over tiles of R query rows. Each thread
// owns two R x K buffers (scores and weights / gradients), plus a K x C dK and dV accumulator in the
// backward; no N x K tensor is ever allocated. Everything inside the parallel region is this file's own
// code: small GEMMs and the row loops, written with GCC/Clang vector extensions and compiled twice
// (AVX2+FMA, chosen at run time, and the baseline). (ATen's BLAS called inside at::parallel_for nests
// OpenMP teams and ran several times slower; calling it between parallel regions instead made many
// small parallel regions, which suffer badly on a shared, loaded machine.) K is small next to N, so a
// row spans all K slots and its log-sum-exp is exact in two sweeps over the cached row.
#include "memory_address/memory_address.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <vector>

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

namespace reconad::memory_address {
namespace {

// Rows per tile: the two R x K buffers (about 128 KiB each) stay in a core's L2.
int64_t tile_rows(int64_t K) {
  return std::clamp<int64_t>(32768 / std::max<int64_t>(K, 1), 4, 128) / 4 * 4;  // 4: the GEMM's row block
}

#if defined(__GNUC__) || defined(__clang__)
#define RECONAD_ALWAYS_INLINE inline __attribute__((always_inline))
#else
#define RECONAD_ALWAYS_INLINE inline
#endif
#if (defined(__GNUC__) || defined(__clang__)) && defined(__x86_64__)
#define RECONAD_HAVE_AVX2_BUILD 1
#define RECONAD_TARGET_AVX2 __attribute__((target("avx2,fma")))
// RECONAD_NO_AVX2=1 forces the baseline build (to test it on an AVX2 machine).
bool cpu_has_avx2() {
  static const bool ok = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                         std::getenv("RECONAD_NO_AVX2") == nullptr;
  return ok;
}
#endif

// The float loops use GCC/Clang vector extensions (8 lanes: two SSE registers in the baseline build,
// one AVX register in the AVX2 build): std::exp and float reductions are not auto-vectorised without
// -ffast-math. Rows are processed 8 slots at a time; the last partial group goes through a padded copy.
// (The functions taking and returning v8f are always inlined, so GCC's note that passing 32-byte vectors
// by value has no fixed ABI without AVX does not apply.)
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wpsabi"
#endif
typedef float v8f __attribute__((vector_size(32)));
typedef int32_t v8i __attribute__((vector_size(32)));

RECONAD_ALWAYS_INLINE v8f load8(const float* p) {
  v8f v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}
RECONAD_ALWAYS_INLINE void store8(float* p, v8f v) { std::memcpy(p, &v, sizeof(v)); }
// (v8f{} + x compiles to one broadcast; an initialiser list of x's to a chain of lane inserts)
RECONAD_ALWAYS_INLINE v8f splat(float x) { return v8f{} + x; }
// mask ? a : b, lane-wise (mask lanes are all ones or all zeros, as comparisons produce)
RECONAD_ALWAYS_INLINE v8f select(v8i mask, v8f a, v8f b) {
  return reinterpret_cast<v8f>((mask & reinterpret_cast<v8i>(a)) | (~mask & reinterpret_cast<v8i>(b)));
}
RECONAD_ALWAYS_INLINE float hsum(v8f v) {
  float r = 0;
  for (int j = 0; j < 8; ++j) r += v[j];
  return r;
}
RECONAD_ALWAYS_INLINE float hmax(v8f v) {
  float r = v[0];
  for (int j = 1; j < 8; ++j) r = r > v[j] ? r : v[j];
  return r;
}

// exp(x) for x <= 0 (0 below -87). Cody-Waite reduction x = n ln2 + r, |r| <= ln2/2, then a degree-7
// Taylor polynomial: relative error about 1 ulp.
RECONAD_ALWAYS_INLINE v8f exp8(v8f x) {
  const v8i tiny = x < splat(-87.0f);
  x = select(tiny, splat(-87.0f), x);
  const v8f magic = splat(12582912.0f);                   // 1.5 * 2^23: adding it rounds to an integer
  const v8f n = (x * splat(1.44269504088896341f) + magic) - magic;
  v8f r = x - n * splat(0.693359375f);                    // ln2 split in a short high part...
  r = r + n * splat(2.12194440e-4f);                      // ...and the rest
  v8f p = splat(1.0f / 5040.0f);
  p = p * r + splat(1.0f / 720.0f);
  p = p * r + splat(1.0f / 120.0f);
  p = p * r + splat(1.0f / 24.0f);
  p = p * r + splat(1.0f / 6.0f);
  p = p * r + splat(0.5f);
  p = p * r + splat(1.0f);
  p = p * r + splat(1.0f);
  const v8i bits = (__builtin_convertvector(n, v8i) + 127) << 23;  // 2^n as a float
  return select(tiny, splat(0.0f), p * reinterpret_cast<v8f>(bits));
}

// Copies a partial group of n < 8 values into an 8-lane buffer, padding with fill.
RECONAD_ALWAYS_INLINE void pad(float* dst, const float* src, int64_t n, float fill) {
  for (int64_t j = 0; j < 8; ++j) dst[j] = j < n ? src[j] : fill;
}

RECONAD_ALWAYS_INLINE float row_max(const float* s, int64_t K) {
  v8f acc = splat(-std::numeric_limits<float>::infinity());
  int64_t k = 0;
  for (; k + 8 <= K; k += 8) {
    const v8f v = load8(s + k);
    acc = select(v > acc, v, acc);
  }
  float m = hmax(acc);
  for (; k < K; ++k) m = s[k] > m ? s[k] : m;
  return m;
}

// p = exp(s - shift); returns sum p.
RECONAD_ALWAYS_INLINE float exp_sum(const float* s, float shift, float* p, int64_t K) {
  v8f acc = splat(0.0f);
  const v8f sh = splat(shift);
  int64_t k = 0;
  for (; k + 8 <= K; k += 8) {
    const v8f e = exp8(load8(s + k) - sh);
    store8(p + k, e);
    acc += e;
  }
  if (k < K) {
    float sb[8], pb[8];
    pad(sb, s + k, K - k, -std::numeric_limits<float>::infinity());  // exp8 gives exactly 0 there
    const v8f e = exp8(load8(sb) - sh);
    store8(pb, e);
    acc += e;
    std::memcpy(p + k, pb, (K - k) * sizeof(float));
  }
  return hsum(acc);
}

// p = s > cut ? p : 0; returns sum p.
RECONAD_ALWAYS_INLINE float mask_sum(const float* s, float cut, float* p, int64_t K) {
  v8f acc = splat(0.0f);
  const v8f c = splat(cut);
  int64_t k = 0;
  for (; k + 8 <= K; k += 8) {
    const v8f e = select(load8(s + k) > c, load8(p + k), splat(0.0f));
    store8(p + k, e);
    acc += e;
  }
  float tail = 0;
  for (; k < K; ++k) {
    p[k] = s[k] > cut ? p[k] : 0.0f;
    tail += p[k];
  }
  return hsum(acc) + tail;
}

// p *= inv; returns sum p (mx - s).
RECONAD_ALWAYS_INLINE float scale_gap(const float* s, float inv, float mx, float* p, int64_t K) {
  v8f acc = splat(0.0f);
  const v8f iv = splat(inv), m = splat(mx);
  int64_t k = 0;
  for (; k + 8 <= K; k += 8) {
    const v8f w = load8(p + k) * iv;
    store8(p + k, w);
    acc += w * (m - load8(s + k));
  }
  float tail = 0;
  for (; k < K; ++k) {
    p[k] *= inv;
    tail += p[k] * (mx - s[k]);
  }
  return hsum(acc) + tail;
}

// Backward of one row. In: s (scores), g (dO_n . v_k). Out: s <- dS, g <- W, where
// dS_nk = w_nk (g_nk - D_n - dh_n (s_nk - mu_n)), D_n = dO_n . out_n, mu_n = sum_k w_nk s_nk.
RECONAD_ALWAYS_INLINE void backward8(float* s, float* g, v8f cut, v8f lse_s, v8f mu, v8f D, v8f dh) {
  const v8f sk = load8(s);
  const v8f d = sk - lse_s;
  const v8f e = exp8(select(d < splat(0.0f), d, splat(0.0f)));
  const v8f w = select(sk > cut, e, splat(0.0f));
  store8(s, w * (load8(g) - D - dh * (sk - mu)));
  store8(g, w);
}

RECONAD_ALWAYS_INLINE void backward_row(float* s, float* g, int64_t K, float cut, float lse_s, float mu, float D,
                                        float dh) {
  const v8f c = splat(cut), l = splat(lse_s), m = splat(mu), dd = splat(D), h = splat(dh);
  int64_t k = 0;
  for (; k + 8 <= K; k += 8) backward8(s + k, g + k, c, l, m, dd, h);
  if (k < K) {
    float sb[8], gb[8];
    pad(sb, s + k, K - k, -std::numeric_limits<float>::infinity());
    pad(gb, g + k, K - k, 0.0f);
    backward8(sb, gb, c, l, m, dd, h);
    std::memcpy(s + k, sb, (K - k) * sizeof(float));
    std::memcpy(g + k, gb, (K - k) * sizeof(float));
  }
}

// Double (gradcheck, fp64 use): plain loops with std::exp.
inline double row_max(const double* s, int64_t K) {
  double m = -std::numeric_limits<double>::infinity();
  for (int64_t k = 0; k < K; ++k) m = std::max(m, s[k]);
  return m;
}
inline double exp_sum(const double* s, double shift, double* p, int64_t K) {
  double sum = 0;
  for (int64_t k = 0; k < K; ++k) sum += (p[k] = std::exp(s[k] - shift));
  return sum;
}
inline double mask_sum(const double* s, double cut, double* p, int64_t K) {
  double sum = 0;
  for (int64_t k = 0; k < K; ++k) sum += (p[k] = s[k] > cut ? p[k] : 0.0);
  return sum;
}
inline double scale_gap(const double* s, double inv, double mx, double* p, int64_t K) {
  double sum = 0;
  for (int64_t k = 0; k < K; ++k) sum += (p[k] *= inv) * (mx - s[k]);
  return sum;
}
inline void backward_row(double* s, double* g, int64_t K, double cut, double lse_s, double mu, double D, double dh) {
  for (int64_t k = 0; k < K; ++k) {
    const double sk = s[k];
    const double w = sk > cut ? std::exp(std::min(sk - lse_s, 0.0)) : 0.0;
    s[k] = w * (g[k] - D - dh * (sk - mu));
    g[k] = w;
  }
}

// The support test, shared by forward and backward so that both see the same support.
template <typename T>
RECONAD_ALWAYS_INLINE T support_cut(T lse, T log_lambda) {
  return lse + log_lambda;
}

// Forward of one row. In: s (K scores). Out: p (K weights) and the row's statistics.
template <typename T>
RECONAD_ALWAYS_INLINE void forward_row(const T* s, T* p, int64_t K, T log_lambda, T* lse_out, T* lse_s_out, T* h_out) {
  const T mx = row_max(s, K);
  const T sum = exp_sum(s, mx, p, K);
  const T lse = mx + std::log(sum);
  const T cut = support_cut(lse, log_lambda);
  *lse_out = lse;
  if (!(mx > cut)) {  // empty support: the row reads zeros and has zero entropy
    std::fill(p, p + K, T(0));
    *lse_s_out = lse;
    *h_out = 0;
    return;
  }
  const T sum_s = log_lambda == -std::numeric_limits<T>::infinity() ? sum : mask_sum(s, cut, p, K);
  // entropy = sum_k w_k (lse_S - s_k) = sum_k w_k (mx - s_k) + log(sum_s): two non-negative terms, no
  // cancellation even when the scores are large.
  const T gap = scale_gap(s, T(1) / sum_s, mx, p, K);
  const T log_sum_s = std::log(sum_s);
  *lse_s_out = mx + log_sum_s;
  *h_out = gap + log_sum_s;
}

// C (M x N, row-major, ldc) = [C +] A B, with A(m, l) = a[m * sam + l * sal] (so A may be a transposed
// view) and B (L x N) row-major. Register blocks of 4 rows x 16 columns; each C element is one
// sequential multiply-add chain over l, so a tile's scores are the same in the forward and the backward.
RECONAD_ALWAYS_INLINE void gemm(int64_t M, int64_t N, int64_t L, const float* a, int64_t sam, int64_t sal,
                                const float* b, int64_t ldb, float* c, int64_t ldc, bool accumulate) {
  int64_t n0 = 0;
  for (; n0 + 16 <= N; n0 += 16) {
    int64_t m0 = 0;
    for (; m0 + 4 <= M; m0 += 4) {
      v8f acc[4][2];
      for (int i = 0; i < 4; ++i) {
        acc[i][0] = accumulate ? load8(c + (m0 + i) * ldc + n0) : splat(0.0f);
        acc[i][1] = accumulate ? load8(c + (m0 + i) * ldc + n0 + 8) : splat(0.0f);
      }
      const float* ar = a + m0 * sam;
      for (int64_t l = 0; l < L; ++l) {
        const v8f b0 = load8(b + l * ldb + n0), b1 = load8(b + l * ldb + n0 + 8);
        for (int i = 0; i < 4; ++i) {
          const v8f x = splat(ar[i * sam + l * sal]);
          acc[i][0] += x * b0;
          acc[i][1] += x * b1;
        }
      }
      for (int i = 0; i < 4; ++i) {
        store8(c + (m0 + i) * ldc + n0, acc[i][0]);
        store8(c + (m0 + i) * ldc + n0 + 8, acc[i][1]);
      }
    }
    for (; m0 < M; ++m0) {
      v8f c0 = accumulate ? load8(c + m0 * ldc + n0) : splat(0.0f);
      v8f c1 = accumulate ? load8(c + m0 * ldc + n0 + 8) : splat(0.0f);
      for (int64_t l = 0; l < L; ++l) {
        const v8f x = splat(a[m0 * sam + l * sal]);
        c0 += x * load8(b + l * ldb + n0);
        c1 += x * load8(b + l * ldb + n0 + 8);
      }
      store8(c + m0 * ldc + n0, c0);
      store8(c + m0 * ldc + n0 + 8, c1);
    }
  }
  for (; n0 + 8 <= N; n0 += 8) {
    for (int64_t m = 0; m < M; ++m) {
      v8f c0 = accumulate ? load8(c + m * ldc + n0) : splat(0.0f);
      for (int64_t l = 0; l < L; ++l) c0 += splat(a[m * sam + l * sal]) * load8(b + l * ldb + n0);
      store8(c + m * ldc + n0, c0);
    }
  }
  for (; n0 < N; ++n0) {
    for (int64_t m = 0; m < M; ++m) {
      float acc = accumulate ? c[m * ldc + n0] : 0.0f;
      for (int64_t l = 0; l < L; ++l) acc += a[m * sam + l * sal] * b[l * ldb + n0];
      c[m * ldc + n0] = acc;
    }
  }
}

inline void gemm(int64_t M, int64_t N, int64_t L, const double* a, int64_t sam, int64_t sal, const double* b,
                 int64_t ldb, double* c, int64_t ldc, bool accumulate) {
  for (int64_t m = 0; m < M; ++m) {
    double* cr = c + m * ldc;
    if (!accumulate) std::fill(cr, cr + N, 0.0);
    for (int64_t l = 0; l < L; ++l) {
      const double x = a[m * sam + l * sal];
      const double* br = b + l * ldb;
      for (int64_t n = 0; n < N; ++n) cr[n] += x * br[n];
    }
  }
}

// Forward of one tile of rows: S = z keys^T, the rows' restricted softmax into P, out = P values.
template <typename T>
RECONAD_ALWAYS_INLINE void forward_tile_t(const T* z, int64_t rows, const T* keys_t, const T* values, int64_t K,
                                          int64_t C, T log_lambda, T* S, T* P, T* out, T* lse, T* lse_s, T* h) {
  gemm(rows, K, C, z, C, 1, keys_t, K, S, K, false);
  for (int64_t i = 0; i < rows; ++i) forward_row<T>(S + i * K, P + i * K, K, log_lambda, lse + i, lse_s + i, h + i);
  gemm(rows, C, K, P, K, 1, values, C, out, C, false);
}

// Backward of one tile of rows: recompute S, G = dO values^T, then dS and W in place, dz = dS keys,
// dK += dS^T z and dV += W^T dO into this thread's accumulators.
template <typename T>
RECONAD_ALWAYS_INLINE void backward_tile_t(const T* z, const T* go, const T* out, int64_t rows, const T* keys,
                                           const T* keys_t, const T* values_t, int64_t K, int64_t C, const T* lse,
                                           const T* lse_s, const T* h, const T* gh, T log_lambda, T* S, T* G,
                                           T* dz, T* dk, T* dv) {
  gemm(rows, K, C, z, C, 1, keys_t, K, S, K, false);   // the forward's call: the same scores and support
  gemm(rows, K, C, go, C, 1, values_t, K, G, K, false);
  for (int64_t i = 0; i < rows; ++i) {
    T D = 0;  // the rowsum(dO * O) trick
    for (int64_t c = 0; c < C; ++c) D += go[i * C + c] * out[i * C + c];
    backward_row(S + i * K, G + i * K, K, support_cut(lse[i], log_lambda), lse_s[i], lse_s[i] - h[i], D, gh[i]);
  }
  gemm(rows, C, K, S, K, 1, keys, C, dz, C, false);
  gemm(K, C, rows, S, 1, K, z, C, dk, C, true);
  gemm(K, C, rows, G, 1, K, go, C, dv, C, true);
}

#define RECONAD_FORWARD_TILE_ARGS                                                                          \
  const float *z, int64_t rows, const float *keys_t, const float *values, int64_t K, int64_t C,            \
      float log_lambda, float *S, float *P, float *out, float *lse, float *lse_s, float *h
#define RECONAD_BACKWARD_TILE_ARGS                                                                         \
  const float *z, const float *go, const float *out, int64_t rows, const float *keys, const float *keys_t, \
      const float *values_t, int64_t K, int64_t C, const float *lse, const float *lse_s, const float *h,   \
      const float *gh, float log_lambda, float *S, float *G, float *dz, float *dk, float *dv

void forward_tile_base(RECONAD_FORWARD_TILE_ARGS) {
  forward_tile_t<float>(z, rows, keys_t, values, K, C, log_lambda, S, P, out, lse, lse_s, h);
}
void backward_tile_base(RECONAD_BACKWARD_TILE_ARGS) {
  backward_tile_t<float>(z, go, out, rows, keys, keys_t, values_t, K, C, lse, lse_s, h, gh, log_lambda, S, G, dz,
                         dk, dv);
}
#ifdef RECONAD_HAVE_AVX2_BUILD
RECONAD_TARGET_AVX2 void forward_tile_avx2(RECONAD_FORWARD_TILE_ARGS) {
  forward_tile_t<float>(z, rows, keys_t, values, K, C, log_lambda, S, P, out, lse, lse_s, h);
}
RECONAD_TARGET_AVX2 void backward_tile_avx2(RECONAD_BACKWARD_TILE_ARGS) {
  backward_tile_t<float>(z, go, out, rows, keys, keys_t, values_t, K, C, lse, lse_s, h, gh, log_lambda, S, G, dz,
                         dk, dv);
}
#endif

void forward_tile(RECONAD_FORWARD_TILE_ARGS) {
#ifdef RECONAD_HAVE_AVX2_BUILD
  if (cpu_has_avx2()) return forward_tile_avx2(z, rows, keys_t, values, K, C, log_lambda, S, P, out, lse, lse_s, h);
#endif
  forward_tile_base(z, rows, keys_t, values, K, C, log_lambda, S, P, out, lse, lse_s, h);
}
void backward_tile(RECONAD_BACKWARD_TILE_ARGS) {
#ifdef RECONAD_HAVE_AVX2_BUILD
  if (cpu_has_avx2()) {
    return backward_tile_avx2(z, go, out, rows, keys, keys_t, values_t, K, C, lse, lse_s, h, gh, log_lambda, S, G,
                              dz, dk, dv);
  }
#endif
  backward_tile_base(z, go, out, rows, keys, keys_t, values_t, K, C, lse, lse_s, h, gh, log_lambda, S, G, dz, dk,
                     dv);
}
void forward_tile(const double* z, int64_t rows, const double* keys_t, const double* values, int64_t K, int64_t C,
                  double log_lambda, double* S, double* P, double* out, double* lse, double* lse_s, double* h) {
  forward_tile_t<double>(z, rows, keys_t, values, K, C, log_lambda, S, P, out, lse, lse_s, h);
}
void backward_tile(const double* z, const double* go, const double* out, int64_t rows, const double* keys,
                   const double* keys_t, const double* values_t, int64_t K, int64_t C, const double* lse,
                   const double* lse_s, const double* h, const double* gh, double log_lambda, double* S, double* G,
                   double* dz, double* dk, double* dv) {
  backward_tile_t<double>(z, go, out, rows, keys, keys_t, values_t, K, C, lse, lse_s, h, gh, log_lambda, S, G, dz,
                          dk, dv);
}

bool is_reduced(at::ScalarType t) { return t == at::kHalf || t == at::kBFloat16; }

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> forward_cpu(
    const at::Tensor& z_in, const at::Tensor& keys_in, const at::Tensor& values_in, double shrink_threshold) {
  check_inputs(z_in, keys_in, values_in, shrink_threshold);
  if (is_reduced(z_in.scalar_type())) {  // compute in float, return in the input dtype
    auto [o, h, l, ls] = forward_cpu(z_in.to(at::kFloat), keys_in.to(at::kFloat), values_in.to(at::kFloat),
                                     shrink_threshold);
    return {o.to(z_in.scalar_type()), h, l, ls};
  }
  const at::Tensor z = z_in.contiguous(), keys = keys_in.contiguous(), values = values_in.contiguous();
  const int64_t N = z.size(0), K = keys.size(0), C = z.size(1);
  auto stats = z.options().dtype(stats_dtype(z.scalar_type()));
  at::Tensor out = at::empty({N, C}, z.options());
  at::Tensor h = at::empty({N}, stats), lse = at::empty({N}, stats), lse_s = at::empty({N}, stats);
  if (N == 0) return {out, h, lse, lse_s};
  const int64_t R = tile_rows(K), ntiles = (N + R - 1) / R;
  const at::Tensor keys_t = keys.t().contiguous();

  AT_DISPATCH_FLOATING_TYPES(z.scalar_type(), "memory_address_cpu", [&] {
    using T = scalar_t;
    const T log_lambda = static_cast<T>(log_threshold(shrink_threshold));
    const T* z_p = z.data_ptr<T>();
    const T* kt_p = keys_t.data_ptr<T>();
    const T* v_p = values.data_ptr<T>();
    T* out_p = out.data_ptr<T>();
    T* h_p = h.data_ptr<T>();
    T* lse_p = lse.data_ptr<T>();
    T* lse_s_p = lse_s.data_ptr<T>();
    at::parallel_for(0, ntiles, 1, [&](int64_t t0, int64_t t1) {
      std::vector<T> buf(2 * R * K);  // this thread's scores and weights
      for (int64_t t = t0; t < t1; ++t) {
        const int64_t r0 = t * R, rows = std::min(R, N - r0);
        forward_tile(z_p + r0 * C, rows, kt_p, v_p, K, C, log_lambda, buf.data(), buf.data() + R * K,
                     out_p + r0 * C, lse_p + r0, lse_s_p + r0, h_p + r0);
      }
    });
  });
  return {out, h, lse, lse_s};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> backward_cpu(
    const at::Tensor& grad_out_in, const at::Tensor& grad_h_in, const at::Tensor& z_in, const at::Tensor& keys_in,
    const at::Tensor& values_in, const at::Tensor& out_in, const at::Tensor& h_in, const at::Tensor& lse_in,
    const at::Tensor& lse_s_in, double shrink_threshold) {
  check_backward_inputs(grad_out_in, grad_h_in, z_in, keys_in, values_in, out_in, h_in, lse_in, lse_s_in,
                        shrink_threshold);
  const int64_t N = z_in.size(0), K = keys_in.size(0), C = z_in.size(1);
  if (is_reduced(z_in.scalar_type())) {
    auto f = [](const at::Tensor& t) { return t.to(at::kFloat); };
    auto [dz, dk, dv] = backward_cpu(f(grad_out_in), grad_h_in, f(z_in), f(keys_in), f(values_in), f(out_in),
                                     h_in, lse_in, lse_s_in, shrink_threshold);
    const auto dt = z_in.scalar_type();
    return {dz.to(dt), dk.to(dt), dv.to(dt)};
  }
  const auto dt = z_in.scalar_type();
  const at::Tensor z = z_in.contiguous(), keys = keys_in.contiguous(), values = values_in.contiguous();
  const at::Tensor go = grad_out_in.to(dt).contiguous(), out = out_in.to(dt).contiguous();
  const auto sd = stats_dtype(dt);
  const at::Tensor gh = grad_h_in.to(sd).contiguous(), h = h_in.to(sd).contiguous(),
                   lse = lse_in.to(sd).contiguous(), lse_s = lse_s_in.to(sd).contiguous();
  at::Tensor dz = at::empty({N, C}, z.options());
  if (N == 0) return {dz, at::zeros({K, C}, z.options()), at::zeros({K, C}, z.options())};
  const int64_t R = tile_rows(K), ntiles = (N + R - 1) / R;
  const at::Tensor keys_t = keys.t().contiguous(), values_t = values.t().contiguous();
  // One dK / dV accumulator per thread, summed at the end: dM is reduced across the row tiles.
  const int64_t nthreads = std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), ntiles));
  at::Tensor dk_parts = at::zeros({nthreads, K, C}, z.options()), dv_parts = at::zeros({nthreads, K, C}, z.options());

  AT_DISPATCH_FLOATING_TYPES(dt, "memory_address_backward_cpu", [&] {
    using T = scalar_t;
    const T log_lambda = static_cast<T>(log_threshold(shrink_threshold));
    const T* z_p = z.data_ptr<T>();
    const T* go_p = go.data_ptr<T>();
    const T* out_p = out.data_ptr<T>();
    const T* k_p = keys.data_ptr<T>();
    const T* kt_p = keys_t.data_ptr<T>();
    const T* vt_p = values_t.data_ptr<T>();
    const T* lse_p = lse.data_ptr<T>();
    const T* lse_s_p = lse_s.data_ptr<T>();
    const T* h_p = h.data_ptr<T>();
    const T* gh_p = gh.data_ptr<T>();
    T* dz_p = dz.data_ptr<T>();
    T* dk_p = dk_parts.data_ptr<T>();
    T* dv_p = dv_parts.data_ptr<T>();
    // Tiles are dealt to at most nthreads contiguous chunks, one per accumulator slot.
    const int64_t per = (ntiles + nthreads - 1) / nthreads;
    at::parallel_for(0, nthreads, 1, [&](int64_t p0, int64_t p1) {
      std::vector<T> buf(2 * R * K);  // this thread's scores / dS and G / W
      for (int64_t part = p0; part < p1; ++part) {
        T* dkp = dk_p + part * K * C;
        T* dvp = dv_p + part * K * C;
        for (int64_t t = part * per; t < std::min(ntiles, (part + 1) * per); ++t) {
          const int64_t r0 = t * R, rows = std::min(R, N - r0);
          backward_tile(z_p + r0 * C, go_p + r0 * C, out_p + r0 * C, rows, k_p, kt_p, vt_p, K, C, lse_p + r0,
                        lse_s_p + r0, h_p + r0, gh_p + r0, log_lambda, buf.data(), buf.data() + R * K,
                        dz_p + r0 * C, dkp, dvp);
        }
      }
    });
  });
  at::Tensor dk = nthreads == 1 ? dk_parts[0] : dk_parts.sum(0);
  at::Tensor dv = nthreads == 1 ? dv_parts[0] : dv_parts.sum(0);
  return {dz, dk, dv};
}

}  // namespace

TORCH_LIBRARY_IMPL(reconad, CPU, m) {
  m.impl("memory_address", &forward_cpu);
  m.impl("memory_address_backward", &backward_cpu);
}

}  // namespace reconad::memory_address
