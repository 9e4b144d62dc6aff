// Scaled dot-product attention (no mask), forward and backward, FlashAttention style.
//
// Neither pass ever materialises the lq x lk score matrix: work is cut into (query block x key block) tiles whose
// scores live in a per-thread scratch buffer, with an online softmax (running row max and row sum) in the forward
// pass and probabilities recomputed from the saved log-sum-exp in the backward pass. Scratch is a few hundred KB per
// thread, sized to stay in L2 (plus, only when the backward pass cannot spread whole heads evenly over the threads,
// one lq x d dQ accumulator per extra thread).
//
// The tile products are done by our own register-blocked SIMD GEMM rather than cblas_sgemm: the tiles are small
// (the BLAS call and packing overhead would be paid on every tile), OpenBLAS's own thread pool does not mix well with
// the OpenMP loop over tiles, and measured on Zen 5 the micro-kernel below beats single-threaded cblas_sgemm tiles
// (by ~8% against OpenBLAS's AVX-512 kernels, ~1.9x against the Haswell kernels OPENBLAS_CORETYPE=Haswell selects).
#include <omp.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <memory>
#include <new>
#include <string>
#include <utility>

#include "attention_simd.h"
#include "napi_util.h"

namespace dcvg {
namespace attn {
namespace {

using idx = std::ptrdiff_t;

// ---------------------------------------------------------------------------------------------------------------
// Tile GEMM.
//
// C (M x N) = or += A (M x K) * B (K x N).
// A is read through arbitrary strides (element (i, k) at A[i*rs + k*cs]), so transposed operands cost nothing.
// B is pre-packed into column panels NR wide: panel p holds B[k][p*NR + c] at Bp[p*pstride + k*NR + c], zero padded
// past N. Packing keeps each panel contiguous, so a whole K x NR panel stays in L1 while the micro-kernel sweeps
// down the rows of A, without the cache-set conflicts that power-of-two row strides would cause.
// ---------------------------------------------------------------------------------------------------------------

#if defined(__AVX512F__)
// 6 x 64 accumulator tile: 24 of the 32 zmm registers, plus 4 for the B row and 1 for the broadcast.
constexpr int MR = 6, NV = 4;
#elif defined(__AVX2__) && defined(__FMA__)
// 6 x 16: 12 of the 16 ymm registers.
constexpr int MR = 6, NV = 2;
#else
constexpr int MR = 4, NV = 4;
#endif
constexpr int NR = NV * W;

using MicroFn = void (*)(idx K, const float* A, idx rs, idx cs, const float* B, float* C, idx ldc, int nc);

// One MR_ x (NV_*W) tile of C; only the first nc columns (nc > (NV_-1)*W) are stored.
template <int MR_, int NV_, bool ACC>
void micro(idx K, const float* A, idx rs, idx cs, const float* B, float* C, idx ldc, int nc) {
  vf acc[MR_][NV_];
#pragma GCC unroll 8
  for (int i = 0; i < MR_; i++)
#pragma GCC unroll 8
    for (int v = 0; v < NV_; v++) acc[i][v] = vzero();
  const float* a = A;
  for (idx k = 0; k < K; k++, a += cs, B += NR) {
    vf b[NV_];
#pragma GCC unroll 8
    for (int v = 0; v < NV_; v++) b[v] = vload(B + v * W);
#pragma GCC unroll 8
    for (int i = 0; i < MR_; i++) {
      const vf ai = vset1(a[i * rs]);
#pragma GCC unroll 8
      for (int v = 0; v < NV_; v++) acc[i][v] = vfma(ai, b[v], acc[i][v]);
    }
  }
#pragma GCC unroll 8
  for (int i = 0; i < MR_; i++) {
    float* c = C + i * ldc;
#pragma GCC unroll 8
    for (int v = 0; v < NV_; v++) {
      const int n = nc - v * W;
      if (n >= W) {
        vstore(c + v * W, ACC ? vadd(vload(c + v * W), acc[i][v]) : acc[i][v]);
      } else {
        vstoren(c + v * W, ACC ? vadd(vloadn(c + v * W, n, 0.f), acc[i][v]) : acc[i][v], n);
      }
    }
  }
}

// Table of micro-kernels indexed by [(rows - 1) * NV + (vectors - 1)] for the row and column tails.
template <bool ACC, std::size_t... I>
constexpr std::array<MicroFn, sizeof...(I)> make_table(std::index_sequence<I...>) {
  return {{&micro<static_cast<int>(I) / NV + 1, static_cast<int>(I) % NV + 1, ACC>...}};
}
constexpr auto kSetTable = make_table<false>(std::make_index_sequence<MR * NV>{});
constexpr auto kAccTable = make_table<true>(std::make_index_sequence<MR * NV>{});

void gemm(idx M, idx N, idx K, const float* A, idx rs, idx cs, const float* Bp, idx pstride, float* C, idx ldc,
          bool accumulate) {
  const auto& tab = accumulate ? kAccTable : kSetTable;
  for (idx n0 = 0, p = 0; n0 < N; n0 += NR, p++) {
    const int nc = static_cast<int>(std::min<idx>(NR, N - n0));
    const int nv = (nc + W - 1) / W;
    const float* b = Bp + p * pstride;
    const MicroFn full = tab[(MR - 1) * NV + nv - 1];
    idx m0 = 0;
    for (; m0 + MR <= M; m0 += MR) full(K, A + m0 * rs, rs, cs, b, C + m0 * ldc + n0, ldc, nc);
    if (m0 < M) tab[(M - m0 - 1) * NV + nv - 1](K, A + m0 * rs, rs, cs, b, C + m0 * ldc + n0, ldc, nc);
  }
}

inline idx panels(idx n) { return (n + NR - 1) / NR; }
inline idx round_up(idx n, idx m) { return (n + m - 1) / m * m; }

// Packs a rows x cols row-major block (leading dimension ld) as a GEMM B operand: K = rows, N = cols.
// Panel stride is rows * NR.
void pack_rows(const float* src, idx ld, idx rows, idx cols, float* dst) {
  for (idx c0 = 0; c0 < cols; c0 += NR) {
    const idx nc = std::min<idx>(NR, cols - c0);
    for (idx r = 0; r < rows; r++) {
      float* d = dst + r * NR;
      std::memcpy(d, src + r * ld + c0, static_cast<std::size_t>(nc) * sizeof(float));
      if (nc < NR) std::memset(d + nc, 0, static_cast<std::size_t>(NR - nc) * sizeof(float));
    }
    dst += rows * NR;
  }
}

// Packs the transpose of an n x kdim row-major block as a GEMM B operand: K = kdim, N = n (the rows of src become
// columns). Panel stride is kdim * NR.
void pack_trans(const float* src, idx ld, idx n, idx kdim, float* dst) {
  for (idx c0 = 0; c0 < n; c0 += NR) {
    const idx nc = std::min<idx>(NR, n - c0);
    if (nc < NR) std::memset(dst, 0, static_cast<std::size_t>(kdim * NR) * sizeof(float));
    idx c = 0;
    for (; c + W <= nc; c += W) {  // whole W x W tiles in registers, the ragged edges element by element
      const float* s = src + (c0 + c) * ld;
      idx k = 0;
      for (; k + W <= kdim; k += W) transpose_tile(s + k, ld, dst + k * NR + c, NR);
      for (; k < kdim; k++)
        for (idx cc = 0; cc < W; cc++) dst[k * NR + c + cc] = s[cc * ld + k];
    }
    for (; c < nc; c++) {
      const float* s = src + (c0 + c) * ld;
      for (idx k = 0; k < kdim; k++) dst[k * NR + c] = s[k];
    }
    dst += kdim * NR;
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Scratch memory: one block per thread, allocated before entering the parallel region so that an allocation failure
// becomes a JS exception instead of terminating inside OpenMP.
// ---------------------------------------------------------------------------------------------------------------

struct FreeDeleter {
  void operator()(float* p) const { std::free(p); }
};
using Buffer = std::unique_ptr<float[], FreeDeleter>;

Buffer alloc_floats(idx n) {
  const std::size_t bytes = round_up(std::max<idx>(n, 1) * static_cast<idx>(sizeof(float)), 64);
  void* p = std::aligned_alloc(64, bytes);
  if (!p) throw std::bad_alloc();
  return Buffer(static_cast<float*>(p));
}

// Carves consecutive 64-byte aligned arrays out of one thread's scratch block.
class Carver {
 public:
  explicit Carver(float* base) : p_(base) {}
  float* take(idx n) {
    float* r = p_;
    p_ += round_up(n, 16);
    return r;
  }

 private:
  float* p_;
};

constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;
constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// Block sizes (rows of the query and key tiles). Multiples of MR and NR keep the micro-kernels on their full-size
// path. Forward: K^T / V of a key block are packed once per query block, so the query block must be large enough to
// amortise that (96 rows cost ~5% more than 192); with these sizes the tile scratch (~0.5 MB for d = 128) still
// fits in a Zen 5 L2 (1 MB). Larger tiles (384 x 512) measured within noise. Backward: 96 x 128 keeps the seven
// working tiles (~0.45 MB) in L2; the 5 GEMMs per tile pair amortise packing well at any size tried (64 - 256).
constexpr idx kFwdBq = 192;
constexpr idx kFwdBk = 256;
constexpr idx kBwdBq = 96;
constexpr idx kBwdBk = 128;

// ---------------------------------------------------------------------------------------------------------------
// Forward
// ---------------------------------------------------------------------------------------------------------------

struct Dims {
  idx bh, lq, lk, d, dv;
  float scale;
};

struct FwdScratch {
  static idx floats(const Dims& s) {
    return round_up(panels(kFwdBk) * s.d * NR, 16) + round_up(panels(s.dv) * kFwdBk * NR, 16) +
           round_up(kFwdBq * kFwdBk, 16) + round_up(kFwdBq * round_up(s.dv, W), 16) + 2 * round_up(kFwdBq, 16);
  }
  FwdScratch(float* base, const Dims& s) {
    Carver c(base);
    kt = c.take(panels(kFwdBk) * s.d * NR);
    vp = c.take(panels(s.dv) * kFwdBk * NR);
    sc = c.take(kFwdBq * kFwdBk);
    ldo = round_up(s.dv, W);
    o = c.take(kFwdBq * ldo);
    m = c.take(kFwdBq);
    l = c.take(kFwdBq);
  }
  float *kt, *vp, *sc, *o, *m, *l;
  idx ldo;
};

// Online-softmax update of one row of the tile. s holds nb raw scores q.k; on return it holds
// p = 2^(c*s - m_new), and the running max m (in log2 units), sum l and output row o are brought up to date.
inline void softmax_row(float* s, idx nb, float c, float& m, float& l, float* o, idx dv) {
  const vf vc = vset1(c);
  vf mx = vset1(kNegInf);
  idx j = 0;
  for (; j + W <= nb; j += W) {
    const vf x = vmul(vload(s + j), vc);
    vstore(s + j, x);
    mx = vmax(mx, x);
  }
  if (j < nb) {
    const int n = static_cast<int>(nb - j);
    const vf x = vmul(vloadn(s + j, n, 0.f), vc);
    vstoren(s + j, x, n);
    mx = vmax(mx, vloadn(s + j, n, kNegInf));
  }
  float mnew = std::max(m, vhmax(mx));
  // A row of -inf scores (only possible with infinite inputs) would otherwise give inf - inf = NaN everywhere.
  if (mnew == kNegInf) mnew = 0.f;
  const vf vm = vset1(mnew);
  vf sum = vzero();
  for (j = 0; j + W <= nb; j += W) {
    const vf p = vexp2(vsub(vload(s + j), vm));
    vstore(s + j, p);
    sum = vadd(sum, p);
  }
  if (j < nb) {
    const int n = static_cast<int>(nb - j);
    vstoren(s + j, vexp2(vsub(vloadn(s + j, n, 0.f), vm)), n);
    sum = vadd(sum, vloadn(s + j, n, 0.f));  // only the n real lanes count
  }
  const float alpha = std::exp2(m - mnew);
  l = l * alpha + vhsum(sum);
  m = mnew;
  if (alpha != 1.f) {
    const vf va = vset1(alpha);
    for (j = 0; j + W <= dv; j += W) vstore(o + j, vmul(vload(o + j), va));
    for (; j < dv; j++) o[j] *= alpha;
  }
}

// One query block of one head: all key blocks, then normalise into out and lse.
void forward_block(const float* q, const float* k, const float* v, float* out, float* lse, idx mb, const Dims& s,
                   FwdScratch& w) {
  const float c = s.scale * kLog2e;  // scores are kept in log2 units so that exp becomes exp2
  for (idx i = 0; i < mb * w.ldo; i++) w.o[i] = 0.f;
  for (idx i = 0; i < mb; i++) {
    w.m[i] = kNegInf;
    w.l[i] = 0.f;
  }
  for (idx j0 = 0; j0 < s.lk; j0 += kFwdBk) {
    const idx nb = std::min(kFwdBk, s.lk - j0);
    pack_trans(k + j0 * s.d, s.d, nb, s.d, w.kt);
    pack_rows(v + j0 * s.dv, s.dv, nb, s.dv, w.vp);
    gemm(mb, nb, s.d, q, s.d, 1, w.kt, s.d * NR, w.sc, kFwdBk, false);
    for (idx i = 0; i < mb; i++) softmax_row(w.sc + i * kFwdBk, nb, c, w.m[i], w.l[i], w.o + i * w.ldo, s.dv);
    gemm(mb, s.dv, nb, w.sc, kFwdBk, 1, w.vp, nb * NR, w.o, w.ldo, true);
  }
  for (idx i = 0; i < mb; i++) {
    const float inv = 1.f / w.l[i];
    const float* o = w.o + i * w.ldo;
    float* dst = out + i * s.dv;
    for (idx j = 0; j < s.dv; j++) dst[j] = o[j] * inv;
    lse[i] = (w.m[i] + std::log2(w.l[i])) * kLn2;
  }
}

void forward(const float* q, const float* k, const float* v, float* out, float* lse, const Dims& s) {
  if (s.bh == 0 || s.lq == 0) return;
  const int nthreads = std::max(1, omp_get_max_threads());
  const idx per = FwdScratch::floats(s);
  Buffer scratch = alloc_floats(per * nthreads);
  const idx nqb = (s.lq + kFwdBq - 1) / kFwdBq;
  const idx ntasks = s.bh * nqb;
#pragma omp parallel num_threads(nthreads)
  {
    FwdScratch w(scratch.get() + per * omp_get_thread_num(), s);
    // Tasks run head-major, so threads working at the same time share one head's K and V in cache.
#pragma omp for schedule(dynamic, 1)
    for (idx t = 0; t < ntasks; t++) {
      const idx h = t / nqb, i0 = (t % nqb) * kFwdBq;
      const idx mb = std::min(kFwdBq, s.lq - i0);
      forward_block(q + (h * s.lq + i0) * s.d, k + h * s.lk * s.d, v + h * s.lk * s.dv,
                    out + (h * s.lq + i0) * s.dv, lse + h * s.lq + i0, mb, s, w);
    }
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Backward
// ---------------------------------------------------------------------------------------------------------------

struct BwdScratch {
  static idx floats(const Dims& s) {
    const idx bkp = round_up(kBwdBk, NR);
    return round_up(s.d * bkp, 16) + round_up(s.dv * bkp, 16) + round_up(kBwdBk * panels(s.d) * NR, 16) +
           round_up(kBwdBq * panels(s.dv) * NR, 16) + round_up(kBwdBq * panels(s.d) * NR, 16) +
           2 * round_up(kBwdBq * kBwdBk, 16);
  }
  BwdScratch(float* base, const Dims& s) {
    Carver c(base);
    const idx bkp = round_up(kBwdBk, NR);
    kt = c.take(s.d * bkp);
    vt = c.take(s.dv * bkp);
    kp = c.take(kBwdBk * panels(s.d) * NR);
    gp = c.take(kBwdBq * panels(s.dv) * NR);
    qp = c.take(kBwdBq * panels(s.d) * NR);
    p = c.take(kBwdBq * kBwdBk);
    dp = c.take(kBwdBq * kBwdBk);
  }
  float *kt, *vt, *kp, *gp, *qp, *p, *dp;
};

struct BwdHead {
  const float *q, *k, *v, *gout, *lse, *delta;  // delta[i] = rowsum(gout * out), row i of this head
  float *gk, *gv;
};

// Key blocks [kb0, kb1) of one head, against every query row: writes those rows of gk and gv (zeroing them first)
// and adds this key range's contribution into gq_acc (lq x d, row-major).
void backward_keys(const BwdHead& h, idx kb0, idx kb1, float* gq_acc, const Dims& s, BwdScratch& w) {
  const float c = s.scale * kLog2e;
  const idx ld = kBwdBk;  // leading dimension of the P and dS tiles
  for (idx kb = kb0; kb < kb1; kb++) {
    const idx j0 = kb * kBwdBk, nb = std::min(kBwdBk, s.lk - j0);
    const float* kj = h.k + j0 * s.d;
    const float* vj = h.v + j0 * s.dv;
    float* gk = h.gk + j0 * s.d;
    float* gv = h.gv + j0 * s.dv;
    std::fill(gk, gk + nb * s.d, 0.f);
    std::fill(gv, gv + nb * s.dv, 0.f);
    pack_trans(kj, s.d, nb, s.d, w.kt);   // B of S  = Q K^T
    pack_trans(vj, s.dv, nb, s.dv, w.vt);  // B of dP = dO V^T
    pack_rows(kj, s.d, nb, s.d, w.kp);     // B of dQ += dS K
    for (idx i0 = 0; i0 < s.lq; i0 += kBwdBq) {
      const idx mb = std::min(kBwdBq, s.lq - i0);
      const float* qi = h.q + i0 * s.d;
      const float* gi = h.gout + i0 * s.dv;
      gemm(mb, nb, s.d, qi, s.d, 1, w.kt, s.d * NR, w.p, ld, false);
      gemm(mb, nb, s.dv, gi, s.dv, 1, w.vt, s.dv * NR, w.dp, ld, false);
      // P = exp(scale*S - lse); dS = scale * P * (dP - delta). The scale is folded into dS so that the dQ and dK
      // products need no extra pass.
      for (idx i = 0; i < mb; i++) {
        float* pr = w.p + i * ld;
        float* dr = w.dp + i * ld;
        const vf vc = vset1(c), vl = vset1(h.lse[i0 + i] * kLog2e), vd = vset1(h.delta[i0 + i]);
        const vf vs = vset1(s.scale);
        idx j = 0;
        for (; j + W <= nb; j += W) {
          const vf p = vexp2(vsub(vmul(vload(pr + j), vc), vl));
          vstore(pr + j, p);
          vstore(dr + j, vmul(vmul(p, vsub(vload(dr + j), vd)), vs));
        }
        if (j < nb) {
          const int n = static_cast<int>(nb - j);
          const vf p = vexp2(vsub(vmul(vloadn(pr + j, n, 0.f), vc), vl));
          vstoren(pr + j, p, n);
          vstoren(dr + j, vmul(vmul(p, vsub(vloadn(dr + j, n, 0.f), vd)), vs), n);
        }
      }
      pack_rows(gi, s.dv, mb, s.dv, w.gp);
      pack_rows(qi, s.d, mb, s.d, w.qp);
      gemm(nb, s.dv, mb, w.p, 1, ld, w.gp, mb * NR, gv, s.dv, true);          // dV += P^T dO
      gemm(nb, s.d, mb, w.dp, 1, ld, w.qp, mb * NR, gk, s.d, true);           // dK += dS^T Q
      gemm(mb, s.d, nb, w.dp, ld, 1, w.kp, nb * NR, gq_acc + i0 * s.d, s.d, true);  // dQ += dS K
    }
  }
}

void backward(const float* q, const float* k, const float* v, const float* out, const float* lse, const float* gout,
              float* gq, float* gk, float* gv, const Dims& s) {
  if (s.bh == 0) return;
  if (s.lq == 0) {  // no queries: every gradient is zero
    std::fill(gk, gk + s.bh * s.lk * s.d, 0.f);
    std::fill(gv, gv + s.bh * s.lk * s.dv, 0.f);
    return;
  }
  const int nthreads = std::max(1, omp_get_max_threads());
  const idx per = BwdScratch::floats(s);
  Buffer scratch = alloc_floats(per * nthreads);
  Buffer delta = alloc_floats(s.bh * s.lq);
  const idx rows = s.bh * s.lq;
#pragma omp parallel for num_threads(nthreads) schedule(static)
  for (idx r = 0; r < rows; r++) {
    const float* a = gout + r * s.dv;
    const float* b = out + r * s.dv;
    vf acc = vzero();
    idx j = 0;
    for (; j + W <= s.dv; j += W) acc = vfma(vload(a + j), vload(b + j), acc);
    float t = vhsum(acc);
    for (; j < s.dv; j++) t += a[j] * b[j];
    delta[r] = t;
  }

  const idx nkb = (s.lk + kBwdBk - 1) / kBwdBk;
  auto head = [&](idx h) {
    return BwdHead{q + h * s.lq * s.d, k + h * s.lk * s.d,  v + h * s.lk * s.dv,  gout + h * s.lq * s.dv,
                   lse + h * s.lq,     delta.get() + h * s.lq, gk + h * s.lk * s.d, gv + h * s.lk * s.dv};
  };

  // Whole heads per thread need no synchronisation and no extra memory, but leave threads idle when the heads do
  // not divide evenly. Then each head's key blocks are split across the threads instead; the dQ contributions of
  // the different key ranges go to per-thread accumulators (lq x d each) and are summed at the end.
  const idx split_bytes = static_cast<idx>(nthreads - 1) * s.lq * s.d * static_cast<idx>(sizeof(float));
  const bool per_head = nthreads == 1 || s.bh % nthreads == 0 || s.bh >= 4 * nthreads || nkb == 1 ||
                        split_bytes > (idx{256} << 20);
  if (per_head) {
#pragma omp parallel num_threads(nthreads)
    {
      BwdScratch w(scratch.get() + per * omp_get_thread_num(), s);
#pragma omp for schedule(dynamic, 1)
      for (idx h = 0; h < s.bh; h++) {
        float* gqh = gq + h * s.lq * s.d;
        std::fill(gqh, gqh + s.lq * s.d, 0.f);
        backward_keys(head(h), 0, nkb, gqh, s, w);
      }
    }
    return;
  }

  Buffer partial = alloc_floats(static_cast<idx>(nthreads - 1) * s.lq * s.d);
  for (idx h = 0; h < s.bh; h++) {
    float* gqh = gq + h * s.lq * s.d;
#pragma omp parallel num_threads(nthreads)
    {
      const int t = omp_get_thread_num(), nt = omp_get_num_threads();
      BwdScratch w(scratch.get() + per * t, s);
      float* acc = t == 0 ? gqh : partial.get() + (t - 1) * s.lq * s.d;
      std::fill(acc, acc + s.lq * s.d, 0.f);
      backward_keys(head(h), nkb * t / nt, nkb * (t + 1) / nt, acc, s, w);
#pragma omp barrier
#pragma omp for schedule(static)
      for (idx i = 0; i < s.lq; i++) {
        float* dst = gqh + i * s.d;
        for (int u = 1; u < nt; u++) {
          const float* src = partial.get() + (u - 1) * s.lq * s.d + i * s.d;
          for (idx j = 0; j < s.d; j++) dst[j] += src[j];
        }
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------------------------
// N-API entry points
// ---------------------------------------------------------------------------------------------------------------

// Reads bh, lq, lk, d, dv, scale from consecutive arguments starting at `first`.
Dims read_dims(const Args& a, std::size_t first) {
  Dims s;
  s.bh = a.i64(first, "bh", 0);
  s.lq = a.i64(first + 1, "lq", 0);
  s.lk = a.i64(first + 2, "lk", 1);
  s.d = a.i64(first + 3, "d", 1);
  s.dv = a.i64(first + 4, "dv", 1);
  const double scale = a.f64(first + 5, "scale");
  if (!std::isfinite(static_cast<float>(scale))) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%g", scale);
    range_error(std::string(a.fname()) + ": argument 'scale' (" + buf + ") does not fit in float32");
  }
  s.scale = static_cast<float>(scale);
  return s;
}

struct Span {
  const F32* arr;
  const char* name;
  std::size_t n;  // elements used
};

// Outputs are written while inputs are still being read, so a view that overlaps another would silently corrupt
// the result; reject that up front.
void check_disjoint(const char* fname, const Span* outs, std::size_t nout, const Span* all, std::size_t nall) {
  for (std::size_t i = 0; i < nout; i++) {
    const std::uintptr_t a0 = reinterpret_cast<std::uintptr_t>(outs[i].arr->data);
    const std::uintptr_t a1 = a0 + outs[i].n * sizeof(float);
    for (std::size_t j = 0; j < nall; j++) {
      if (all[j].arr == outs[i].arr || outs[i].n == 0 || all[j].n == 0) continue;
      const std::uintptr_t b0 = reinterpret_cast<std::uintptr_t>(all[j].arr->data);
      const std::uintptr_t b1 = b0 + all[j].n * sizeof(float);
      if (a0 < b1 && b0 < a1)
        range_error(std::string(fname) + ": output '" + outs[i].name + "' overlaps argument '" + all[j].name + "'");
    }
  }
}

// Element count a*b*c with overflow checking; `what` names the product in the error message.
std::size_t count3(const char* fname, idx a, idx b, idx c, const char* what) {
  return numel({a, b, c}, (std::string(fname) + ": " + what).c_str());
}

napi_value Attention(napi_env env, napi_callback_info info) {
  return guarded(env, [&]() -> napi_value {
    const char* fn = "attention";
    Args a(env, info, 11, fn);
    const F32 q = a.f32(0, "q"), k = a.f32(1, "k"), v = a.f32(2, "v");
    const Dims s = read_dims(a, 3);
    const F32 out = a.f32(9, "out"), lse = a.f32(10, "lse");
    const std::size_t nq = count3(fn, s.bh, s.lq, s.d, "bh*lq*d");
    const std::size_t nk = count3(fn, s.bh, s.lk, s.d, "bh*lk*d");
    const std::size_t nv = count3(fn, s.bh, s.lk, s.dv, "bh*lk*dv");
    const std::size_t no = count3(fn, s.bh, s.lq, s.dv, "bh*lq*dv");
    const std::size_t nl = count3(fn, s.bh, s.lq, 1, "bh*lq");
    need_len(q, nq, "q", fn);
    need_len(k, nk, "k", fn);
    need_len(v, nv, "v", fn);
    need_len(out, no, "out", fn);
    need_len(lse, nl, "lse", fn);
    const Span all[] = {{&q, "q", nq}, {&k, "k", nk}, {&v, "v", nv}, {&out, "out", no}, {&lse, "lse", nl}};
    check_disjoint(fn, all + 3, 2, all, 5);
    forward(q.data, k.data, v.data, out.data, lse.data, s);
    return nullptr;
  });
}

napi_value AttentionBackward(napi_env env, napi_callback_info info) {
  return guarded(env, [&]() -> napi_value {
    const char* fn = "attentionBackward";
    Args a(env, info, 15, fn);
    const F32 q = a.f32(0, "q"), k = a.f32(1, "k"), v = a.f32(2, "v"), out = a.f32(3, "out");
    const F32 lse = a.f32(4, "lse"), gout = a.f32(5, "gout");
    const Dims s = read_dims(a, 6);
    const F32 gq = a.f32(12, "gq"), gk = a.f32(13, "gk"), gv = a.f32(14, "gv");
    const std::size_t nq = count3(fn, s.bh, s.lq, s.d, "bh*lq*d");
    const std::size_t nk = count3(fn, s.bh, s.lk, s.d, "bh*lk*d");
    const std::size_t nv = count3(fn, s.bh, s.lk, s.dv, "bh*lk*dv");
    const std::size_t no = count3(fn, s.bh, s.lq, s.dv, "bh*lq*dv");
    const std::size_t nl = count3(fn, s.bh, s.lq, 1, "bh*lq");
    need_len(q, nq, "q", fn);
    need_len(k, nk, "k", fn);
    need_len(v, nv, "v", fn);
    need_len(out, no, "out", fn);
    need_len(lse, nl, "lse", fn);
    need_len(gout, no, "gout", fn);
    need_len(gq, nq, "gq", fn);
    need_len(gk, nk, "gk", fn);
    need_len(gv, nv, "gv", fn);
    const Span all[] = {{&q, "q", nq},     {&k, "k", nk},       {&v, "v", nv},   {&out, "out", no}, {&lse, "lse", nl},
                        {&gout, "gout", no}, {&gq, "gq", nq}, {&gk, "gk", nk}, {&gv, "gv", nv}};
    check_disjoint(fn, all + 6, 3, all, 9);
    backward(q.data, k.data, v.data, out.data, lse.data, gout.data, gq.data, gk.data, gv.data, s);
    return nullptr;
  });
}

}  // namespace
}  // namespace attn
}  // namespace dcvg

void register_attention(napi_env env, napi_value exports) {
  dcvg::export_fn(env, exports, "attention", dcvg::attn::Attention);
  dcvg::export_fn(env, exports, "attentionBackward", dcvg::attn::AttentionBackward);
}
