// CPU kernel of reconad::pro_curve (definition in reconad/ops/pro_curve.py).
//
// Pass 1 (parallel over chunks of images): 8-connected union-find labelling of each mask (the size of the
//   region of every anomalous pixel, in raster order) and a histogram of every 7th normal pixel's
//   order-preserving key (top 16 bits).
// Cut: from that sample, a bin safely below the first normal pixel whose FPR exceeds the limit; only pixels
//   in or above it can change the area, so only they are ordered. Pass 2 checks the cut exactly (and falls
//   back to an exact histogram if the sample misled it).
// Pass 2 (parallel): branch-free compaction of those pixels as (key, region size or 0 for normal).
// Bucketing: an MSD radix step on the top 16 key bits, with each bin's normal count and weight sum, so every
//   bin knows the curve's state above it.
// Per bin (parallel): the area is sum over curve points of (P_before + P_after) (new normal pixels)
//   / (2 n_normal n_regions), P the running sum of 1 / region size. float32 bins are aggregated through a
//   2^16-entry table of the low key bits (between two anomalous keys every normal pixel adds 2 P: no sort);
//   small and float64 bins are radix sorted. The bin holding the crossing is swept point by point and the
//   crossing segment is cut at the limit as the official code does. return_curve sorts and sweeps in order.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <memory>
#include <mutex>
#include <cstdint>
#include <vector>

#include "pro_curve/pro_curve.h"

namespace reconad {
namespace {

using namespace pro_curve_detail;

constexpr int kHistBits = 16;
constexpr int64_t kHistBins = int64_t(1) << kHistBits;

// ---------------------------------------------------------------------------------------------------------
// Connected components (8-connectivity) of one (H, W) mask by a two-scan union-find (Wu et al.'s decision
// tree: when the pixel above is set it already joins every other scanned neighbour).
struct Labeler {
  std::vector<int32_t> lab, parent, final_id;
  std::vector<int64_t> size;

  inline int32_t find(int32_t x) {
    while (parent[x] != x) {
      parent[x] = parent[parent[x]];
      x = parent[x];
    }
    return x;
  }
  inline void unite(int32_t a, int32_t b) {  // the smaller root wins, so parent[x] <= x always
    a = find(a);
    b = find(b);
    if (a < b) parent[b] = a; else if (b < a) parent[a] = b;
  }

  std::vector<int32_t> fg;  // anomalous pixel positions, raster order

  // Appends, for every anomalous pixel in raster order, the size of its region to `sizes_out`;
  // returns the number of regions.
  int64_t run(const uint8_t* m, int64_t H, int64_t W, std::vector<uint32_t>& sizes_out) {
    const int64_t n = H * W;
    fg.clear();
    // masks are mostly background: skip 8 zero bytes at a time to find the anomalous pixels
    int64_t p = 0;
    for (; p + 8 <= n; p += 8) {
      uint64_t word;
      std::memcpy(&word, m + p, 8);
      if (word == 0) continue;
      for (int64_t q = p; q < p + 8; ++q)
        if (m[q]) fg.push_back(static_cast<int32_t>(q));
    }
    for (; p < n; ++p)
      if (m[p]) fg.push_back(static_cast<int32_t>(p));
    if (fg.empty()) return 0;
    if (static_cast<int64_t>(lab.size()) < n) lab.resize(n);
    parent.clear();
    parent.push_back(0);
    int32_t next = 1;
    for (const int32_t q : fg) {
      const int64_t y = q / W, x = q - y * W;
      const uint8_t* row = m + y * W;
      const uint8_t* up = y > 0 ? row - W : nullptr;
      int32_t* lr = lab.data() + y * W;
      int32_t* lu = lr - W;
      int32_t l;
      if (up && up[x]) {  // the pixel above already joins every other scanned neighbour
        l = lu[x];
      } else if (up && x + 1 < W && up[x + 1]) {
        l = lu[x + 1];
        if (x > 0 && up[x - 1]) unite(l, lu[x - 1]);
        else if (x > 0 && row[x - 1]) unite(l, lr[x - 1]);
      } else if (up && x > 0 && up[x - 1]) {
        l = lu[x - 1];
      } else if (x > 0 && row[x - 1]) {
        l = lr[x - 1];
      } else {
        l = next++;
        parent.push_back(l);
      }
      lr[x] = l;
    }
    // flatten: parent[l] < l, so parent[parent[l]] is already a root when l is reached in increasing order
    final_id.assign(next, 0);
    int32_t count = 0;
    for (int32_t l = 1; l < next; ++l) {
      if (parent[l] == l) final_id[l] = ++count;
      else final_id[l] = final_id[find(l)];
    }
    size.assign(count + 1, 0);
    for (const int32_t q : fg) size[final_id[lab[q]]]++;
    for (const int32_t q : fg) sizes_out.push_back(static_cast<uint32_t>(size[final_id[lab[q]]]));
    return count;
  }
};


// ---------------------------------------------------------------------------------------------------------
// Scratch memory kept between calls. A fresh multi-MiB allocation is mmap-ed, and faulting its pages in
// costs about as much as a pass over the data, so up to kScratchCap bytes of released buffers are kept
// (process-wide, thread-safe) for the next call.
constexpr size_t kScratchCap = size_t(1) << 30;

class Scratch {
 public:
  Scratch() = default;
  explicit Scratch(size_t bytes) {
    {
      std::lock_guard<std::mutex> g(mu());
      auto& pool = cache();
      size_t best = pool.size();
      for (size_t i = 0; i < pool.size(); ++i)
        if (pool[i].second >= bytes && (best == pool.size() || pool[i].second < pool[best].second)) best = i;
      if (best < pool.size()) {
        ptr_ = std::move(pool[best].first);
        bytes_ = pool[best].second;
        pool.erase(pool.begin() + best);
        return;
      }
    }
    ptr_.reset(new uint8_t[std::max<size_t>(bytes, 1)]);  // uninitialised on purpose
    bytes_ = bytes;
  }
  Scratch(Scratch&&) = default;
  Scratch& operator=(Scratch&& o) {
    release();
    ptr_ = std::move(o.ptr_);
    bytes_ = o.bytes_;
    return *this;
  }
  ~Scratch() { release(); }
  template <typename E> E* as() const { return reinterpret_cast<E*>(ptr_.get()); }
  void release() {
    if (!ptr_) return;
    std::lock_guard<std::mutex> g(mu());
    auto& pool = cache();
    size_t held = 0;
    for (auto& e : pool) held += e.second;
    while (!pool.empty() && held + bytes_ > kScratchCap) {  // drop the smallest first
      size_t smallest = 0;
      for (size_t i = 1; i < pool.size(); ++i)
        if (pool[i].second < pool[smallest].second) smallest = i;
      held -= pool[smallest].second;
      pool.erase(pool.begin() + smallest);
    }
    if (bytes_ <= kScratchCap) pool.emplace_back(std::move(ptr_), bytes_);
    ptr_.reset();
  }

 private:
  static std::mutex& mu() {
    static std::mutex m;
    return m;
  }
  static std::vector<std::pair<std::unique_ptr<uint8_t[]>, size_t>>& cache() {
    static std::vector<std::pair<std::unique_ptr<uint8_t[]>, size_t>> c;
    return c;
  }
  std::unique_ptr<uint8_t[]> ptr_;
  size_t bytes_ = 0;
};

// ---------------------------------------------------------------------------------------------------------
// Candidates: key and payload (0 = normal pixel, else the pixel's region size).
struct Elem32 {  // float32 maps: one 64-bit word, key in the high half
  uint64_t v;
  using K = uint32_t;
  static inline Elem32 make(uint32_t k, uint32_t payload) { return {(uint64_t(k) << 32) | payload}; }
  inline uint32_t key() const { return static_cast<uint32_t>(v >> 32); }
  inline uint32_t payload() const { return static_cast<uint32_t>(v); }
};
struct Elem64 {  // float64 maps
  uint64_t k;
  uint64_t p;
  using K = uint64_t;
  static inline Elem64 make(uint64_t k, uint32_t payload) { return {k, payload}; }
  inline uint64_t key() const { return k; }
  inline uint32_t payload() const { return static_cast<uint32_t>(p); }
};
template <typename T> struct ElemOf;
template <> struct ElemOf<float> { using type = Elem32; };
template <> struct ElemOf<double> { using type = Elem64; };

// Sorts a[0, n) ascending by the key bits below `bits` (all elements share the bits above), using tmp.
// LSD radix with 8-bit digits (256 write streams: no TLB thrashing); one counting pass for every digit.
template <typename E>
void sort_bin(E* a, E* tmp, int64_t n, int bits) {
  using K = typename E::K;
  if (n < 2) return;
  if (n <= 48) {  // insertion sort: small bins are common in the tail of the distribution
    for (int64_t i = 1; i < n; ++i) {
      const E e = a[i];
      int64_t j = i - 1;
      while (j >= 0 && a[j].key() > e.key()) {
        a[j + 1] = a[j];
        --j;
      }
      a[j + 1] = e;
    }
    return;
  }
  const int passes = (bits + 7) / 8;
  std::vector<int64_t> hist(static_cast<size_t>(passes) * 256, 0);
  for (int64_t i = 0; i < n; ++i) {
    const K k = a[i].key();
    for (int p = 0; p < passes; ++p) hist[p * 256 + ((k >> (8 * p)) & 0xFF)]++;
  }
  E* src = a;
  E* dst = tmp;
  for (int p = 0; p < passes; ++p) {
    int64_t* h = hist.data() + p * 256;
    bool trivial = false;
    for (int d = 0; d < 256; ++d)
      if (h[d] != 0) {
        trivial = h[d] == n;
        break;
      }
    if (trivial) continue;
    int64_t off = 0;
    for (int d = 0; d < 256; ++d) {
      const int64_t c = h[d];
      h[d] = off;
      off += c;
    }
    const int sh = 8 * p;
    for (int64_t i = 0; i < n; ++i) dst[h[(src[i].key() >> sh) & 0xFF]++] = src[i];
    std::swap(src, dst);
  }
  if (src != a) std::copy(src, src + n, a);
}

// Splits bins [b0, b1) into `parts` contiguous ranges of about equal element counts.
std::vector<int64_t> balance(const std::vector<int64_t>& start, int64_t b0, int64_t b1, int64_t parts) {
  std::vector<int64_t> cuts{b0};
  const int64_t total = start[b1] - start[b0];
  int64_t b = b0;
  for (int64_t p = 1; p < parts; ++p) {
    const int64_t target = start[b0] + total * p / parts;
    while (b < b1 && start[b + 1] <= target) ++b;
    cuts.push_back(std::max(b, cuts.back()));
  }
  cuts.push_back(b1);
  return cuts;
}

template <typename T>
std::vector<at::Tensor> pro_curve_impl(const at::Tensor& maps, const at::Tensor& masks, double limit,
                                       bool return_curve) {
  using K = typename KeyOf<T>::type;
  using E = typename ElemOf<T>::type;
  constexpr int kShift = 8 * sizeof(K) - kHistBits;
  constexpr int64_t kStride = 7;  // pass 1 histograms every 7th normal pixel (odd: no aliasing with widths 2^k)
  const int64_t N = maps.size(0), H = maps.size(1), W = maps.size(2), HW = H * W;
  const T* s = maps.data_ptr<T>();
  const uint8_t* m = static_cast<const uint8_t*>(masks.data_ptr());
  const int64_t threads = std::max<int64_t>(at::get_num_threads(), 1);
  TORCH_CHECK(HW < (int64_t(1) << 31), "pro_curve: one map has ", HW, " pixels; at most 2^31 are supported");

  // chunks of whole images, two per thread (load balance)
  const int64_t nchunks = std::min<int64_t>(N, threads * 2);
  const int64_t per_chunk = nchunks > 0 ? (N + nchunks - 1) / nchunks : 0;
  const int64_t nch = per_chunk > 0 ? (N + per_chunk - 1) / per_chunk : 0;
  auto images = [&](int64_t c) { return std::make_pair(c * per_chunk, std::min(N, (c + 1) * per_chunk)); };

  std::vector<int64_t> sample(nch * kHistBins, 0);
  std::vector<std::vector<uint32_t>> sizes(nch);
  std::vector<int64_t> regions(nch, 0);
  std::vector<uint8_t> has_nan(nch, 0);

  // ---- pass 1: labels (region size of every anomalous pixel), a sampled histogram of normal scores
  at::parallel_for(0, nch, 1, [&](int64_t c0, int64_t c1) {
    Labeler lab;
    for (int64_t c = c0; c < c1; ++c) {
      int64_t* hs = sample.data() + c * kHistBins;
      for (int64_t i = images(c).first; i < images(c).second; ++i) {
        const T* si = s + i * HW;
        const uint8_t* mi = m + i * HW;
        regions[c] += lab.run(mi, H, W, sizes[c]);
        for (int64_t p = (i * HW) % kStride == 0 ? 0 : kStride - (i * HW) % kStride; p < HW; p += kStride) {
          hs[float_key<T>(si[p]) >> kShift] += mi[p] == 0;
        }
      }
      sizes[c].push_back(0);  // sentinel: pass 2 reads one past the last anomalous pixel
    }
  });
  int64_t n_regions = 0, n_anom = 0;
  for (int64_t c = 0; c < nch; ++c) {
    n_regions += regions[c];
    n_anom += static_cast<int64_t>(sizes[c].size()) - 1;
  }
  const int64_t n_normal = N * HW - n_anom;
  AreaAccumulator acc(limit, n_normal, n_regions, return_curve);
  if (n_normal == 0 || n_regions == 0) {
    AreaAccumulator empty(limit, n_normal, n_regions, false);
    return empty.outputs(n_normal, n_regions);
  }
  const int64_t kcount = max_normal_count(limit, n_normal);

  // ---- cut estimate: a bin low enough that (with a wide margin) the (kcount+1)-th largest normal score is
  // above it; checked exactly in pass 2, which falls back to an exact histogram if the sample misled us.
  int64_t cut_bin = 0;
  if (kcount < n_normal) {
    std::vector<int64_t> merged(kHistBins, 0);
    int64_t sampled = 0;
    for (int64_t c = 0; c < nch; ++c)
      for (int64_t b = 0; b < kHistBins; ++b) merged[b] += sample[c * kHistBins + b];
    for (int64_t b = 0; b < kHistBins; ++b) sampled += merged[b];
    const double want = double(kcount + 1) * double(sampled) / double(n_normal);
    const double need = want * 1.02 + 6.0 * std::sqrt(want) + 64.0;
    int64_t cum = 0;
    for (int64_t b = kHistBins - 1; b >= 0; --b) {
      cum += merged[b];
      if (double(cum) >= need) {
        cut_bin = b;
        break;
      }
    }
  }
  std::vector<int64_t>().swap(sample);

  // ---- pass 2: compact every pixel in or above the cut bin (branch-free: every pixel is written, only the
  // candidates advance the cursor; the buffer is sized for all pixels but only the touched pages are mapped)
  std::vector<Scratch> cand(nch);
  std::vector<int64_t> cand_n(nch, 0), cand_normal(nch, 0);
  auto compact = [&](int64_t cbin) {
    const K cut_key = K(cbin) << kShift;
    at::parallel_for(0, nch, 1, [&](int64_t c0, int64_t c1) {
      for (int64_t c = c0; c < c1; ++c) {
        const int64_t npix = (images(c).second - images(c).first) * HW;
        if (!cand[c].as<E>()) cand[c] = Scratch((npix + 1) * sizeof(E));
        E* out = cand[c].as<E>();
        const uint32_t* sz = sizes[c].data();
        int64_t j = 0, fill = 0, normals = 0;
        bool nan = false;
        for (int64_t i = images(c).first; i < images(c).second; ++i) {
          const T* si = s + i * HW;
          const uint8_t* mi = m + i * HW;
          for (int64_t p = 0; p < HW; ++p) {
            const T v = si[p];
            const K k = float_key<T>(v);
            nan |= v != v;
            const uint32_t anom = mi[p] != 0;
            out[fill] = E::make(k, sz[j] & (0u - anom));
            j += anom;
            const int64_t take = k >= cut_key;
            fill += take;
            normals += take & (anom ^ 1u);
          }
        }
        cand_n[c] = fill;
        cand_normal[c] = normals;
        has_nan[c] = nan;
      }
    });
  };
  compact(cut_bin);
  int64_t got = 0;
  for (int64_t c = 0; c < nch; ++c) {
    got += cand_normal[c];
    TORCH_CHECK_VALUE(!has_nan[c], "pro_curve: anomaly_maps contain NaN");
  }
  if (kcount < n_normal && got <= kcount) {
    // the sample put the cut too high (rare): exact histogram of the normal scores, then compact again
    std::vector<int64_t> hist(nch * kHistBins, 0);
    at::parallel_for(0, nch, 1, [&](int64_t c0, int64_t c1) {
      for (int64_t c = c0; c < c1; ++c)
        for (int64_t g = images(c).first * HW; g < images(c).second * HW; ++g)
          hist[c * kHistBins + (float_key<T>(s[g]) >> kShift)] += m[g] == 0;
    });
    int64_t cum = 0;
    cut_bin = 0;
    for (int64_t b = kHistBins - 1; b >= 0 && cum <= kcount; --b) {
      for (int64_t c = 0; c < nch; ++c) cum += hist[c * kHistBins + b];
      if (cum > kcount) cut_bin = b;
    }
    compact(cut_bin);
  }
  std::vector<std::vector<uint32_t>>().swap(sizes);

  // ---- bucket the candidates by bin (an MSD radix step), with each bin's normal count and weight sum
  const int64_t nb = kHistBins - cut_bin;
  std::vector<int64_t> chist(nch * nb, 0), cnorm(nch * nb, 0);
  std::vector<double> cw(nch * nb, 0.0);
  at::parallel_for(0, nch, 1, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      int64_t* h = chist.data() + c * nb;
      int64_t* hn = cnorm.data() + c * nb;
      double* hw = cw.data() + c * nb;
      const E* in = cand[c].as<E>();
      for (int64_t i = 0; i < cand_n[c]; ++i) {
        const int64_t r = int64_t(in[i].key() >> kShift) - cut_bin;
        const uint32_t pl = in[i].payload();
        h[r]++;
        if (pl == 0) hn[r]++;
        else hw[r] += 1.0 / static_cast<double>(pl);
      }
    }
  });
  std::vector<int64_t> start(kHistBins + 1, 0), fp0(kHistBins + 1, 0);
  std::vector<double> p0(kHistBins + 1, 0.0);
  for (int64_t b = cut_bin; b < kHistBins; ++b) {
    int64_t tot = 0;
    for (int64_t c = 0; c < nch; ++c) {
      const int64_t v = chist[c * nb + b - cut_bin];
      chist[c * nb + b - cut_bin] = start[b] + tot;  // this chunk's first slot in bin b
      tot += v;
    }
    start[b + 1] = start[b] + tot;
  }
  {  // fp0[b] / p0[b]: normal pixels / weights at or above bin b
    CompensatedSum run;
    for (int64_t b = kHistBins - 1; b >= cut_bin; --b) {
      int64_t nrm = 0;
      double w = 0.0;
      for (int64_t c = 0; c < nch; ++c) {
        nrm += cnorm[c * nb + b - cut_bin];
        w += cw[c * nb + b - cut_bin];
      }
      fp0[b] = fp0[b + 1] + nrm;
      run.add(w);
      p0[b] = run.value();
    }
  }
  const int64_t M = start[kHistBins];
  // uninitialised on purpose: every slot is written by the bucketing / the sort before it is read
  // (the sort path's second buffer: only the pages it touches are ever mapped)
  Scratch scratch_a((M + 1) * sizeof(E)), scratch_b((M + 1) * sizeof(E));
  E* const buf_a = scratch_a.as<E>();
  E* const buf_b = scratch_b.as<E>();
  at::parallel_for(0, nch, 1, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      int64_t* h = chist.data() + c * nb;
      E* out = buf_a;
      const E* in = cand[c].as<E>();
      for (int64_t i = 0; i < cand_n[c]; ++i) out[h[int64_t(in[i].key() >> kShift) - cut_bin]++] = in[i];
      cand[c].release();
    }
  });

  // bins whose first point is already past the limit are never needed
  int64_t low_bin = kHistBins;
  for (int64_t b = kHistBins - 1; b >= cut_bin && fp0[b + 1] <= kcount; --b) low_bin = b;
  const std::vector<int64_t> parts = balance(start, low_bin, kHistBins, threads * 4);

  if (return_curve) {  // order the needed bins, then one sequential sweep recording every point
    at::parallel_for(0, static_cast<int64_t>(parts.size()) - 1, 1, [&](int64_t q0, int64_t q1) {
      for (int64_t q = q0; q < q1; ++q)
        for (int64_t b = parts[q]; b < parts[q + 1]; ++b)
          sort_bin<E>(buf_a + start[b], buf_b + start[b], start[b + 1] - start[b], kShift);
    });
    int64_t fp = 0;
    CompensatedSum pro;
    for (int64_t i = M - 1; i >= start[low_bin] && !acc.done; --i) {
      const E e = buf_a[i];
      const uint32_t pl = e.payload();
      if (pl == 0) ++fp;
      else pro.add(1.0 / static_cast<double>(pl));
      if (i == 0 || buf_a[i - 1].key() != e.key()) acc.point(fp, pro.value());
    }
    return acc.outputs(n_normal, n_regions);
  }

  // ---- per bin, in parallel: area = sum over curve points of (P_before + P_after) * (new normal pixels)
  // / (2 n_normal n_regions), P = running sum of 1 / region size, started from the bins above.
  std::vector<double> bin_area(kHistBins, 0.0);
  int64_t x_fp_prev = 0, x_fp = 0;  // the segment that crosses the limit (exactly one bin finds it)
  double x_p_prev = 0.0, x_p = 0.0;
  bool crossed = false;
  struct Sweep {  // running state of one bin's sweep
    int64_t kcount, fp, fp_prev;
    CompensatedSum P, area;
    double P_prev;
    bool stop = false, cross = false;
    int64_t c_fp_prev = 0, c_fp = 0;
    double c_p_prev = 0.0, c_p = 0.0;
    inline void point() {  // end of a group of equal scores
      const double Pv = P.value();
      if (fp != fp_prev) {
        if (fp > kcount) {
          if (fp_prev <= kcount) {
            cross = true;
            c_fp_prev = fp_prev;
            c_p_prev = P_prev;
            c_fp = fp;
            c_p = Pv;
          }
          stop = true;
          return;
        }
        area.add((P_prev + Pv) * static_cast<double>(fp - fp_prev));
        fp_prev = fp;
      }
      P_prev = Pv;
    }
  };
  at::parallel_for(0, static_cast<int64_t>(parts.size()) - 1, 1, [&](int64_t q0, int64_t q1) {
    std::vector<uint32_t> table;                       // float32: normal count per low 16 key bits
    std::vector<std::pair<uint32_t, double>> anom;
    for (int64_t q = q0; q < q1; ++q)
      for (int64_t b = parts[q]; b < parts[q + 1]; ++b) {
        const int64_t lo = start[b], hi = start[b + 1], n = hi - lo;
        if (n == 0) continue;
        Sweep sw;
        sw.kcount = kcount;
        sw.fp = sw.fp_prev = fp0[b + 1];
        sw.P.add(p0[b + 1]);
        sw.P_prev = p0[b + 1];
        E* a = buf_a + lo;
        const int64_t n_anom_bin = n - (fp0[b] - fp0[b + 1]);
        const bool crossing_bin = fp0[b] > kcount;   // (fp0[b + 1] <= kcount for every bin swept)
        if (n_anom_bin == 0 && !crossing_bin) {
          // only normal pixels and P constant: every one of them adds 2 P (P_before = P_after)
          sw.area.add(2.0 * p0[b + 1] * static_cast<double>(n));
        } else if (sizeof(K) == 4 && n >= 4096) {
          // dense float32 bin: the low 16 key bits index a table directly; no sort of the normal pixels
          table.assign(size_t(1) << kShift, 0u);
          anom.clear();
          for (int64_t i = 0; i < n; ++i) {
            const uint32_t low = static_cast<uint32_t>(a[i].key()) & 0xFFFFu;
            const uint32_t pl = a[i].payload();
            if (pl == 0) table[low]++;
            else anom.emplace_back(low, 1.0 / static_cast<double>(pl));
          }
          std::sort(anom.begin(), anom.end(), [](const auto& x, const auto& y) { return x.first > y.first; });
          if (crossing_bin) {  // point by point, to find the crossing
            size_t ai = 0;
            for (int64_t v = 0xFFFF; v >= 0 && !sw.stop; --v) {
              const uint32_t c = table[v];
              const bool has_a = ai < anom.size() && anom[ai].first == uint32_t(v);
              if (c == 0 && !has_a) continue;
              while (ai < anom.size() && anom[ai].first == uint32_t(v)) sw.P.add(anom[ai++].second);
              sw.fp += c;
              sw.point();
            }
          } else {
            // between two anomalous keys P is constant: each normal pixel there adds 2 P; normal pixels
            // tied with an anomalous key add P_before + P_after
            auto count = [&](int64_t v0, int64_t v1) {  // normals with low bits in [v0, v1]
              uint64_t c = 0;
              for (int64_t v = v0; v <= v1; ++v) c += table[v];
              return static_cast<double>(c);
            };
            double P = p0[b + 1];
            int64_t hi_v = 0xFFFF;
            size_t ai = 0;
            while (ai < anom.size()) {
              const uint32_t v = anom[ai].first;
              sw.area.add(2.0 * P * count(int64_t(v) + 1, hi_v));
              double Pa = P;
              while (ai < anom.size() && anom[ai].first == v) Pa += anom[ai++].second;
              sw.area.add((P + Pa) * static_cast<double>(table[v]));
              P = Pa;
              hi_v = int64_t(v) - 1;
            }
            sw.area.add(2.0 * P * count(0, hi_v));
          }
        } else {
          sort_bin<E>(a, buf_b + lo, n, kShift);
          for (int64_t i = n - 1; i >= 0 && !sw.stop; --i) {
            const uint32_t pl = a[i].payload();
            if (pl == 0) ++sw.fp;
            else sw.P.add(1.0 / static_cast<double>(pl));
            if (i == 0 || a[i - 1].key() != a[i].key()) sw.point();
          }
        }
        bin_area[b] = sw.area.value();
        if (sw.cross) {
          x_fp_prev = sw.c_fp_prev;
          x_p_prev = sw.c_p_prev;
          x_fp = sw.c_fp;
          x_p = sw.c_p;
          crossed = true;
        }
      }
  });
  CompensatedSum total;
  for (int64_t b = kHistBins - 1; b >= low_bin; --b) total.add(bin_area[b]);
  double area = total.value() * 0.5 / (static_cast<double>(n_normal) * static_cast<double>(n_regions));
  if (crossed) area += crossing_area(limit, x_fp_prev, x_p_prev, x_fp, x_p, n_normal, n_regions);
  AreaAccumulator out(limit, n_normal, n_regions, false);
  out.area.add(area);
  return out.outputs(n_normal, n_regions);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> pro_curve_cpu(const at::Tensor& anomaly_maps,
                                                             const at::Tensor& masks, double fpr_limit,
                                                             bool return_curve) {
  check_inputs(anomaly_maps, masks, fpr_limit);
  const at::Tensor maps = anomaly_maps.contiguous();
  const at::Tensor m = masks.contiguous();
  std::vector<at::Tensor> out = maps.scalar_type() == at::kFloat
                                    ? pro_curve_impl<float>(maps, m, fpr_limit, return_curve)
                                    : pro_curve_impl<double>(maps, m, fpr_limit, return_curve);
  return {out[0], out[1], out[2]};
}

}  // namespace

TORCH_LIBRARY_IMPL(reconad, CPU, m) { m.impl("pro_curve", &pro_curve_cpu); }

}  // namespace reconad
