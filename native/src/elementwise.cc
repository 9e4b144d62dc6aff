// Elementwise, strided-copy, reduction, softmax, normalisation and optimiser kernels of the dcvg_native addon.
// Semantics follow src/backend/backend.ts; argument order follows src/backend/native.ts.
//
// Conventions used throughout:
//  * Every entry point validates all of its arguments (lengths against shape products, strided views against the
//    furthest element they can reach, op names) before touching memory; kernels below the entry points trust them.
//  * Work is split over OpenMP threads only when it is large enough (kParallelMin elements) to repay waking the
//    thread team; splits are static so results do not depend on scheduling.
//  * Inner loops are written for GCC's auto-vectoriser (unit-stride, no calls; see elementwise_math.h). Reductions
//    use `omp simd reduction` so the vectoriser may reassociate them without -ffast-math.

// Lets GCC if-convert (and so vectorise) loops whose selects have floating-point arithmetic in one arm; see
// elementwise_math.h. It changes no results: nothing here unmasks floating-point exceptions. Placed before every
// include so that all functions in this file share one set of options (mismatched options block inlining).
#pragma GCC optimize("no-trapping-math")

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "elementwise_math.h"
#include "elementwise_iter.h"
#include "napi_util.h"

namespace dcvg {
namespace {

using emath::exp_approx;
using emath::sigmoid_approx;
using emath::tanh_approx;

constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

// max / min that return NaN when either side is NaN (torch.maximum, torch.amax semantics). Two plain selects: a > b
// is false when b is NaN, giving b; the second select catches a NaN a. (Written with a boolean `||` or `|`, nested
// uses stop GCC 12 from vectorising the loop.)
inline float nanmax(float a, float b) {
  const float r = a > b ? a : b;
  return a != a ? a : r;
}
inline float nanmin(float a, float b) {
  const float r = a < b ? a : b;
  return a != a ? a : r;
}

// ---------------------------------------------------------------------------------------------------------------
// Argument helpers
// ---------------------------------------------------------------------------------------------------------------

// Like Args::f64 but also accepts +-Infinity and NaN: `fill(out, -Infinity)` or `affine(x, Infinity, 0)` are
// meaningful elementwise requests, unlike non-finite hyper-parameters. Args has already checked the count.
double any_number(napi_env env, napi_callback_info info, size_t count, size_t i, const char* fname, const char* name) {
  std::vector<napi_value> argv(count);
  size_t argc = count;
  napi_get_cb_info(env, info, &argc, argv.data(), nullptr, nullptr);
  napi_valuetype t;
  napi_typeof(env, argv[i], &t);
  if (t != napi_number) type_error(std::string(fname) + ": argument '" + name + "' must be a number");
  double v;
  napi_get_value_double(env, argv[i], &v);
  return v;
}

// Index of `s` in names[0..n), or a TypeError that lists the valid names.
template <size_t N>
int parse_op(const std::string& s, const char* const (&names)[N], const char* fname, const char* what) {
  for (size_t i = 0; i < N; i++)
    if (s == names[i]) return static_cast<int>(i);
  std::string list;
  for (size_t i = 0; i < N; i++) list += (i ? ", " : "") + std::string(names[i]);
  type_error(std::string(fname) + ": unknown " + what + " '" + s + "' (expected one of: " + list + ")");
}

// Dense elementwise kernels take arrays of exactly equal length (the tensor layer always passes exact sizes, and the
// reference backend insists on it): a mismatch is a caller bug, reported as a RangeError.
void same_len(const F32& a, size_t n, const char* name, const char* fname) {
  if (a.length != n)
    range_error(std::string(fname) + ": argument '" + name + "' has " + std::to_string(a.length) +
                " elements, expected " + std::to_string(n));
}

size_t as_size(int64_t v) { return static_cast<size_t>(v); }

// outer * mid * inner with overflow checking (numel throws a RangeError on overflow).
size_t product3(int64_t a, int64_t b, int64_t c, const char* name) { return numel({a, b, c}, name); }

// ---------------------------------------------------------------------------------------------------------------
// Unary ops
// ---------------------------------------------------------------------------------------------------------------

enum UnaryOp {
  kNeg, kExp, kLog, kSqrt, kRsqrt, kAbs, kSign, kSin, kCos, kTanh, kSigmoid, kRelu, kSilu, kGeluTanh, kGeluErf,
  kSquare, kRecip
};
const char* const kUnaryNames[] = {"neg",     "exp",  "log",  "sqrt",      "rsqrt",    "abs",    "sign",
                                   "sin",     "cos",  "tanh", "sigmoid",   "relu",     "silu",   "gelu_tanh",
                                   "gelu_erf", "square", "recip"};

// 1 / sqrt(2 pi), for the normal density in the erf-GELU derivative.
constexpr float kInvSqrt2Pi = 0.3989422804014327f;
constexpr float kSqrtHalf = 0.7071067811865476f;

// out[i] = f(x[i]). min_parallel is lower for ops that call libm per element (far more work per element).
// (The loop runs inside the parallel_range lambda on captured pointers; GCC still vectorises it.)
template <class F>
void map1(const float* x, float* out, size_t n, F f, size_t min_parallel = kParallelMin) {
  parallel_range(
      n,
      [&](size_t b, size_t e) {
        for (size_t i = b; i < e; i++) out[i] = f(x[i]);
      },
      min_parallel);
}

// Ops that remain libm calls per element (sin, cos, pow: not vectorised) get threads from this size on.
constexpr size_t kParallelMinLibm = 4096;

void unary_forward(UnaryOp op, const float* x, float* out, size_t n) {
  switch (op) {
    case kNeg: return map1(x, out, n, [](float v) { return -v; });
    case kExp: return map1(x, out, n, [](float v) { return exp_approx(v); });
    case kLog: return map1(x, out, n, [](float v) { return emath::log_approx(v); });
    case kSqrt:
      return parallel_range(n, [&](size_t b, size_t e) { emath::sqrt_array(x + b, out + b, e - b); });
    case kRsqrt:
      return parallel_range(n, [&](size_t b, size_t e) {
        emath::sqrt_array(x + b, out + b, e - b);
        for (size_t i = b; i < e; i++) out[i] = 1.0f / out[i];
      });
    case kAbs: return map1(x, out, n, [](float v) { return std::fabs(v); });
    // (0 < v) - (v < 0), as PyTorch: sign(NaN) = 0.
    case kSign: return map1(x, out, n, [](float v) { return static_cast<float>((0.0f < v) - (v < 0.0f)); });
    case kSin: return map1(x, out, n, [](float v) { return std::sin(v); }, kParallelMinLibm);
    case kCos: return map1(x, out, n, [](float v) { return std::cos(v); }, kParallelMinLibm);
    case kTanh: return map1(x, out, n, [](float v) { return tanh_approx(v); });
    case kSigmoid: return map1(x, out, n, [](float v) { return sigmoid_approx(v); });
    // Keeps NaN (v < 0 is false for NaN), as torch.relu.
    case kRelu: return map1(x, out, n, [](float v) { return v < 0.0f ? 0.0f : v; });
    case kSilu: return map1(x, out, n, [](float v) { return v / (1.0f + exp_approx(-v)); });
    case kGeluTanh: return map1(x, out, n, [](float v) { return emath::gelu_tanh(v); });
    // PyTorch's formula, kept as is so that the float cancellation in 1 + erf for very negative x matches it.
    case kGeluErf: return map1(x, out, n, [](float v) { return 0.5f * v * (1.0f + emath::erf_approx(v * kSqrtHalf)); });
    case kSquare: return map1(x, out, n, [](float v) { return v * v; });
    case kRecip: return map1(x, out, n, [](float v) { return 1.0f / v; });
  }
}

// gx[i] = f(x[i], y[i], gy[i]) where y = op(x).
template <class F>
void map3(const float* x, const float* y, const float* gy, float* gx, size_t n, F f,
          size_t min_parallel = kParallelMin) {
  parallel_range(
      n,
      [&](size_t b, size_t e) {
        for (size_t i = b; i < e; i++) gx[i] = f(x[i], y[i], gy[i]);
      },
      min_parallel);
}

// Derivatives follow PyTorch's autograd formulas (tools/autograd/derivatives.yaml), including their choices at
// kinks: abs'(0) = 0, sign' = 0, relu'(0) = 0 (taken from the output, as threshold_backward does).
void unary_backward(UnaryOp op, const float* x, const float* y, const float* gy, float* gx, size_t n) {
  switch (op) {
    case kNeg: return map3(x, y, gy, gx, n, [](float, float, float g) { return -g; });
    case kExp: return map3(x, y, gy, gx, n, [](float, float r, float g) { return g * r; });
    case kLog: return map3(x, y, gy, gx, n, [](float v, float, float g) { return g / v; });
    case kSqrt: return map3(x, y, gy, gx, n, [](float, float r, float g) { return g / (2.0f * r); });
    case kRsqrt: return map3(x, y, gy, gx, n, [](float, float r, float g) { return -0.5f * g * r * r * r; });
    case kAbs:
      return map3(x, y, gy, gx, n, [](float v, float, float g) {
        return g * static_cast<float>((0.0f < v) - (v < 0.0f));
      });
    case kSign: return map3(x, y, gy, gx, n, [](float, float, float) { return 0.0f; });
    case kSin: return map3(x, y, gy, gx, n, [](float v, float, float g) { return g * std::cos(v); }, kParallelMinLibm);
    case kCos:
      return map3(x, y, gy, gx, n, [](float v, float, float g) { return -g * std::sin(v); }, kParallelMinLibm);
    case kTanh: return map3(x, y, gy, gx, n, [](float, float r, float g) { return g * (1.0f - r * r); });
    case kSigmoid: return map3(x, y, gy, gx, n, [](float, float r, float g) { return g * (1.0f - r) * r; });
    case kRelu: return map3(x, y, gy, gx, n, [](float, float r, float g) { return r > 0.0f ? g : 0.0f; });
    case kSilu:
      return map3(x, y, gy, gx, n, [](float v, float, float g) {
        const float s = sigmoid_approx(v);
        return g * s * (1.0f + v * (1.0f - s));
      });
    case kGeluTanh:
      return map3(x, y, gy, gx, n, [](float v, float, float g) {
        const float v2 = v * v;
        const float t = tanh_approx(emath::kGeluBeta * (v + emath::kGeluKappa * v2 * v));
        const float left = 0.5f * v;
        const float right = 1.0f + t;
        const float dinner = emath::kGeluBeta * (1.0f + 3.0f * emath::kGeluKappa * v2);
        return g * (0.5f * right + left * (1.0f - t * t) * dinner);
      });
    case kGeluErf:
      return map3(x, y, gy, gx, n, [](float v, float, float g) {
        const float cdf = 0.5f * (1.0f + emath::erf_approx(v * kSqrtHalf));
        const float pdf = kInvSqrt2Pi * exp_approx(-0.5f * v * v);
        return g * (cdf + v * pdf);
      });
    case kSquare: return map3(x, y, gy, gx, n, [](float v, float, float g) { return 2.0f * v * g; });
    case kRecip: return map3(x, y, gy, gx, n, [](float, float r, float g) { return -g * (r * r); });
  }
}

// out = x ** p. Exponents PyTorch special-cases are computed the same way (exact squares, sqrt instead of powf).
void pow_scalar(const float* x, float p, float* out, size_t n) {
  if (p == 0.0f) return parallel_range(n, [&](size_t b, size_t e) { std::fill(out + b, out + e, 1.0f); });
  if (p == 1.0f) return map1(x, out, n, [](float v) { return v; });
  if (p == 2.0f) return map1(x, out, n, [](float v) { return v * v; });
  if (p == 3.0f) return map1(x, out, n, [](float v) { return v * v * v; });
  if (p == -1.0f) return map1(x, out, n, [](float v) { return 1.0f / v; });
  if (p == -2.0f) return map1(x, out, n, [](float v) { return 1.0f / (v * v); });
  if (p == 0.5f) return unary_forward(kSqrt, x, out, n);
  if (p == -0.5f) return unary_forward(kRsqrt, x, out, n);
  map1(x, out, n, [p](float v) { return std::pow(v, p); }, kParallelMinLibm);
}

// ---------------------------------------------------------------------------------------------------------------
// Binary ops over broadcast strided views
// ---------------------------------------------------------------------------------------------------------------

enum BinaryOp { kAdd, kSub, kMul, kDiv, kMax, kMin, kPow, kEq, kGt };
const char* const kBinaryNames[] = {"add", "sub", "mul", "div", "max", "min", "pow", "eq", "gt"};

struct OpAdd { static float f(float a, float b) { return a + b; } };
struct OpSub { static float f(float a, float b) { return a - b; } };
struct OpMul { static float f(float a, float b) { return a * b; } };
struct OpDiv { static float f(float a, float b) { return a / b; } };
struct OpMax { static float f(float a, float b) { return nanmax(a, b); } };
struct OpMin { static float f(float a, float b) { return nanmin(a, b); } };
struct OpPow { static float f(float a, float b) { return std::pow(a, b); } };
struct OpEq { static float f(float a, float b) { return a == b ? 1.0f : 0.0f; } };
struct OpGt { static float f(float a, float b) { return a > b ? 1.0f : 0.0f; } };

// The iteration space is the coalesced layout; rows are its innermost dimension. The stride pattern of the
// innermost dimension picks one of four row loops, so the common cases (same-shape dense, tensor-with-scalar,
// broadcast along outer dims) run unit-stride vectorised loops.
template <class Op>
void binary_kernel(const float* a, int64_t a_off, const float* b, int64_t b_off, const Layout& L, float* out,
                   size_t n) {
  const int64_t sa = L.st[0][L.nd - 1];
  const int64_t sb = L.st[1][L.nd - 1];
  const int64_t base[2] = {a_off, b_off};
  auto run = [&](auto row) {
    parallel_range(n, [&](size_t lo, size_t hi) { walk_rows<2>(L, base, lo, hi, row); });
  };
  if (sa == 1 && sb == 1) {
    run([&](size_t pos, const int64_t* off, size_t cnt) {
      const float* pa = a + off[0];
      const float* pb = b + off[1];
      float* po = out + pos;
      for (size_t i = 0; i < cnt; i++) po[i] = Op::f(pa[i], pb[i]);
    });
  } else if (sa == 1 && sb == 0) {
    run([&](size_t pos, const int64_t* off, size_t cnt) {
      const float* pa = a + off[0];
      const float vb = b[off[1]];
      float* po = out + pos;
      for (size_t i = 0; i < cnt; i++) po[i] = Op::f(pa[i], vb);
    });
  } else if (sa == 0 && sb == 1) {
    run([&](size_t pos, const int64_t* off, size_t cnt) {
      const float va = a[off[0]];
      const float* pb = b + off[1];
      float* po = out + pos;
      for (size_t i = 0; i < cnt; i++) po[i] = Op::f(va, pb[i]);
    });
  } else {
    run([&](size_t pos, const int64_t* off, size_t cnt) {
      const float* pa = a + off[0];
      const float* pb = b + off[1];
      float* po = out + pos;
      for (size_t i = 0; i < cnt; i++) po[i] = Op::f(pa[i * sa], pb[i * sb]);
    });
  }
}

void binary(BinaryOp op, const float* a, int64_t a_off, const float* b, int64_t b_off, const Layout& L, float* out,
            size_t n) {
  switch (op) {
    case kAdd: return binary_kernel<OpAdd>(a, a_off, b, b_off, L, out, n);
    case kSub: return binary_kernel<OpSub>(a, a_off, b, b_off, L, out, n);
    case kMul: return binary_kernel<OpMul>(a, a_off, b, b_off, L, out, n);
    case kDiv: return binary_kernel<OpDiv>(a, a_off, b, b_off, L, out, n);
    case kMax: return binary_kernel<OpMax>(a, a_off, b, b_off, L, out, n);
    case kMin: return binary_kernel<OpMin>(a, a_off, b, b_off, L, out, n);
    case kPow: return binary_kernel<OpPow>(a, a_off, b, b_off, L, out, n);
    case kEq: return binary_kernel<OpEq>(a, a_off, b, b_off, L, out, n);
    case kGt: return binary_kernel<OpGt>(a, a_off, b, b_off, L, out, n);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Reductions
// ---------------------------------------------------------------------------------------------------------------

// Sums of contiguous runs: float partial sums over blocks of kSumBlock elements (vectorised with 16 lanes each, so
// every lane adds only kSumBlock / 16 values), accumulated in double across blocks. The error stays at a few float
// ulps of the result for any length, at the speed of a plain float sum.
constexpr size_t kSumBlock = 2048;

double sum_contiguous(const float* x, size_t n) {
  double s = 0.0;
  for (size_t b = 0; b < n; b += kSumBlock) {
    const float* xb = x + b;
    const size_t len = std::min(kSumBlock, n - b);
    float f = 0.0f;
#pragma omp simd reduction(+ : f)
    for (size_t i = 0; i < len; i++) f += xb[i];
    s += f;
  }
  return s;
}

// Sum in double throughout, for statistics whose error must be small relative to the spread of the values rather than
// to their sum (the mean in LayerNorm).
double sum_contiguous_exact(const float* x, size_t n) {
  double s = 0.0;
#pragma omp simd reduction(+ : s)
  for (size_t i = 0; i < n; i++) s += x[i];
  return s;
}

// max over x[0..n), n > 0; NaN anywhere gives NaN (as torch.amax).
float max_contiguous(const float* x, size_t n) {
  float m = -kInf;
  int nan = 0;
#pragma omp simd reduction(max : m) reduction(| : nan)
  for (size_t i = 0; i < n; i++) {
    m = x[i] > m ? x[i] : m;
    nan |= x[i] != x[i];
  }
  return nan ? kNaN : m;
}

// Positions of the inner axis handled together when reducing over a strided middle axis: the accumulators stay in
// L1 while r rows stream past.
constexpr size_t kReduceTile = 512;
// Rows summed in float (four at a time, pairwise) before their partial sums are added to double accumulators.
constexpr size_t kReduceRowGroup = 64;

// max that ignores NaN when it is the second operand (a single vmaxps); see reduce_block.
inline float fastmax(float a, float b) { return a > b ? a : b; }

// out[i] = op_j x[j * inner + i] for i in [0, len), j in [0, r), r > 0: one (outer, inner-tile) block. Rows are
// combined four at a time so the accumulators are loaded and stored once per four rows.
void reduce_block(bool is_max, const float* x, size_t r, size_t inner, size_t len, float* out) {
  if (is_max) {
    // NaN-propagating selects cost several mask operations per element; instead take a max that may drop NaNs and a
    // plain sum as a NaN detector (NaN in, NaN out). A column whose sum is NaN (a NaN, or inf - inf) is redone
    // exactly.
    float acc[kReduceTile], chk[kReduceTile];
    std::memcpy(acc, x, len * sizeof(float));
    std::memcpy(chk, x, len * sizeof(float));
    size_t j = 1;
    for (; j + 4 <= r; j += 4) {
      const float* a = x + j * inner;
      const float *b = a + inner, *c = b + inner, *d = c + inner;
      for (size_t i = 0; i < len; i++) {
        acc[i] = fastmax(fastmax(acc[i], fastmax(a[i], b[i])), fastmax(c[i], d[i]));
        chk[i] += (a[i] + b[i]) + (c[i] + d[i]);
      }
    }
    for (; j < r; j++) {
      const float* row = x + j * inner;
      for (size_t i = 0; i < len; i++) {
        acc[i] = fastmax(acc[i], row[i]);
        chk[i] += row[i];
      }
    }
    for (size_t i = 0; i < len; i++) {
      if (chk[i] == chk[i]) {
        out[i] = acc[i];
        continue;
      }
      float m = x[i];
      for (size_t k = 1; k < r; k++) m = nanmax(m, x[k * inner + i]);
      out[i] = m;
    }
  } else {
    double acc[kReduceTile];
    float part[kReduceTile];
    std::fill(acc, acc + len, 0.0);
    for (size_t j0 = 0; j0 < r; j0 += kReduceRowGroup) {
      const size_t j1 = std::min(r, j0 + kReduceRowGroup);
      std::fill(part, part + len, 0.0f);
      size_t j = j0;
      for (; j + 4 <= j1; j += 4) {
        const float* a = x + j * inner;
        const float *b = a + inner, *c = b + inner, *d = c + inner;
        for (size_t i = 0; i < len; i++) part[i] += (a[i] + b[i]) + (c[i] + d[i]);
      }
      for (; j < j1; j++) {
        const float* row = x + j * inner;
        for (size_t i = 0; i < len; i++) part[i] += row[i];
      }
      for (size_t i = 0; i < len; i++) acc[i] += part[i];
    }
    for (size_t i = 0; i < len; i++) out[i] = static_cast<float>(acc[i]);
  }
}

void reduce(bool is_max, const float* x, size_t outer, size_t r, size_t inner, float* out) {
  const size_t total = outer * r * inner;
  const int nt = omp_get_max_threads();
  if (r == 0) {  // only reachable for sum (validated): empty sums are 0
    std::fill(out, out + outer * inner, 0.0f);
    return;
  }
  if (inner == 1) {
    // Few long rows (e.g. a full reduction): split each row across threads; otherwise one row per iteration.
    if (outer < static_cast<size_t>(2 * nt) && total >= kParallelMin && nt > 1) {
      for (size_t o = 0; o < outer; o++) {
        const float* row = x + o * r;
        std::vector<double> part(nt, 0.0);
        std::vector<float> partm(nt, -kInf);
        std::vector<char> used(nt, 0);
        parallel_range(r, [&](size_t b, size_t e) {
          const int t = omp_get_thread_num();
          used[t] = 1;
          if (is_max)
            partm[t] = max_contiguous(row + b, e - b);
          else
            part[t] = sum_contiguous(row + b, e - b);
        });
        if (is_max) {
          float m = -kInf;
          for (int t = 0; t < nt; t++)
            if (used[t]) m = nanmax(m, partm[t]);
          out[o] = m;
        } else {
          double s = 0.0;
          for (int t = 0; t < nt; t++) s += part[t];
          out[o] = static_cast<float>(s);
        }
      }
      return;
    }
    parallel_for(outer, total, [&](size_t o) {
      out[o] = is_max ? max_contiguous(x + o * r, r) : static_cast<float>(sum_contiguous(x + o * r, r));
    });
    return;
  }
  const size_t tiles = (inner + kReduceTile - 1) / kReduceTile;
  const size_t blocks = outer * tiles;
  if (blocks < static_cast<size_t>(nt) && total >= kParallelMin && nt > 1 && r >= static_cast<size_t>(2 * nt)) {
    // Too few (outer, tile) blocks to occupy the threads: split r instead, each thread reducing a slab of rows into
    // its own partial result, combined afterwards in thread order.
    const size_t m = outer * inner;
    std::vector<float> part(static_cast<size_t>(nt) * m);
    std::vector<char> used(nt, 0);
    parallel_range(r, [&](size_t b, size_t e) {
      const int t = omp_get_thread_num();
      used[t] = 1;
      float* dst = part.data() + static_cast<size_t>(t) * m;
      for (size_t o = 0; o < outer; o++)
        for (size_t i0 = 0; i0 < inner; i0 += kReduceTile)
          reduce_block(is_max, x + (o * r + b) * inner + i0, e - b, inner, std::min(kReduceTile, inner - i0),
                       dst + o * inner + i0);
    }, 1);
    for (size_t k = 0; k < m; k++) {
      if (is_max) {
        float v = -kInf;
        for (int t = 0; t < nt; t++)
          if (used[t]) v = nanmax(v, part[static_cast<size_t>(t) * m + k]);
        out[k] = v;
      } else {
        double s = 0.0;
        for (int t = 0; t < nt; t++)
          if (used[t]) s += part[static_cast<size_t>(t) * m + k];
        out[k] = static_cast<float>(s);
      }
    }
    return;
  }
  parallel_for(blocks, total, [&](size_t blk) {
    const size_t o = blk / tiles;
    const size_t i0 = (blk % tiles) * kReduceTile;
    reduce_block(is_max, x + o * r * inner + i0, r, inner, std::min(kReduceTile, inner - i0), out + o * inner + i0);
  });
}

// ---------------------------------------------------------------------------------------------------------------
// Softmax
// ---------------------------------------------------------------------------------------------------------------

void softmax_row(const float* x, float* y, size_t n, bool log) {
  float m = -kInf;
#pragma omp simd reduction(max : m)
  for (size_t i = 0; i < n; i++) m = x[i] > m ? x[i] : m;
  // A NaN in the row is skipped by the max but then turns the sum, and so every output, into NaN (as PyTorch).
  // The sum is blocked like sum_contiguous.
  double s = 0.0;
  for (size_t b = 0; b < n; b += kSumBlock) {
    const size_t e = std::min(n, b + kSumBlock);
    float bs = 0.0f;
    if (log) {
#pragma omp simd reduction(+ : bs)
      for (size_t i = b; i < e; i++) bs += exp_approx(x[i] - m);
    } else {
#pragma omp simd reduction(+ : bs)
      for (size_t i = b; i < e; i++) {
        const float v = exp_approx(x[i] - m);
        y[i] = v;
        bs += v;
      }
    }
    s += bs;
  }
  if (log) {
    const float ls = static_cast<float>(std::log(s));
    for (size_t i = 0; i < n; i++) y[i] = (x[i] - m) - ls;
  } else {
    const float inv = static_cast<float>(1.0 / s);
    for (size_t i = 0; i < n; i++) y[i] *= inv;
  }
}

// softmax: gx = y * (gy - sum(gy * y)); log-softmax: gx = gy - exp(y) * sum(gy).
void softmax_backward_row(const float* y, const float* gy, float* gx, size_t n, bool log) {
  double s = 0.0;
  if (log) {
    s = sum_contiguous(gy, n);
    const float sf = static_cast<float>(s);
    for (size_t i = 0; i < n; i++) gx[i] = gy[i] - exp_approx(y[i]) * sf;
  } else {
#pragma omp simd reduction(+ : s)
    for (size_t i = 0; i < n; i++) s += static_cast<double>(gy[i]) * y[i];
    const float sf = static_cast<float>(s);
    for (size_t i = 0; i < n; i++) gx[i] = y[i] * (gy[i] - sf);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// LayerNorm / RMSNorm over axis 1 of (outer, c, inner)
// ---------------------------------------------------------------------------------------------------------------
//
// Statistics are accumulated in double, and x - mean is formed in double before rounding, so inputs with a large
// mean relative to their spread keep full precision. 'rms' is the same computation with mean fixed at 0.

// Calls f(std::bool_constant<a>): turns a runtime flag into a template parameter so that e.g. "w absent" costs
// nothing inside vectorised loops.
template <class F>
void with_flag(bool a, F&& f) {
  if (a)
    f(std::true_type{});
  else
    f(std::false_type{});
}

// Two flags at once: f(std::bool_constant<a>, std::bool_constant<b>).
template <class F>
void with_flags(bool a, bool b, F&& f) {
  with_flag(a, [&](auto ca) { with_flag(b, [&](auto cb) { f(ca, cb); }); });
}

struct NormArgs {
  bool layer;
  const float* x;
  size_t outer, c, inner;
  const float* w;  // null: 1
  const float* b;  // null: 0
  double eps;
  float* y;
  float* mean;  // may be null for rms
  float* rstd;
};

// inner == 1: each row of c contiguous values is one normalisation group.
void norm_rows(const NormArgs& a) {
  const size_t c = a.c;
  const double inv_c = c ? 1.0 / static_cast<double>(c) : 0.0;
  with_flags(a.w != nullptr, a.b != nullptr, [&](auto has_w, auto has_b) {
    parallel_for(a.outer, a.outer * c, [&](size_t r) {
      const float* x = a.x + r * c;
      float* y = a.y + r * c;
      const double mu = a.layer ? sum_contiguous_exact(x, c) * inv_c : 0.0;
      double ss = 0.0;
#pragma omp simd reduction(+ : ss)
      for (size_t i = 0; i < c; i++) {
        const double d = x[i] - mu;
        ss += d * d;
      }
      const double rs = 1.0 / std::sqrt(ss * inv_c + a.eps);
      if (a.layer) a.mean[r] = static_cast<float>(mu);
      a.rstd[r] = static_cast<float>(rs);
      const float* w = a.w;
      const float* b = a.b;
      for (size_t i = 0; i < c; i++) {
        float v = static_cast<float>((x[i] - mu) * rs);
        if constexpr (decltype(has_w)::value) v *= w[i];
        if constexpr (decltype(has_b)::value) v += b[i];
        y[i] = v;
      }
    });
  });
}

// Largest number of inner positions normalised together when inner > 1.
constexpr size_t kNormTileMax = 512;

// Positions per tile: enough that the per-channel rows (tile floats each) are long vectorised loops, few enough that
// the tile's c x tile block stays in L2 across the two or three passes over it.
size_t norm_tile(size_t c, size_t inner) {
  size_t t = c ? (size_t(65536) / c) & ~size_t(15) : kNormTileMax;
  t = std::max<size_t>(16, std::min(t, kNormTileMax));
  return std::min(t, inner);
}

// inner > 1 (channel norm of e.g. NCTHW tensors): the group of position (o, i) is x[o, :, i], strided by inner.
// Instead of walking each group with that stride, a tile of adjacent positions is processed at once: every pass runs
// over the channels with a unit-stride loop across the tile's positions.
void norm_channels(const NormArgs& a) {
  const size_t c = a.c, inner = a.inner;
  const double inv_c = c ? 1.0 / static_cast<double>(c) : 0.0;
  const size_t T = norm_tile(c, inner);
  const size_t tiles = (inner + T - 1) / T;
  parallel_for(a.outer * tiles, a.outer * c * inner, [&](size_t blk) {
    const size_t o = blk / tiles;
    const size_t i0 = (blk % tiles) * T;
    const size_t len = std::min(T, inner - i0);
    const float* x = a.x + o * c * inner + i0;
    float* y = a.y + o * c * inner + i0;
    double mu[kNormTileMax], rs[kNormTileMax];
    std::fill(mu, mu + len, 0.0);
    std::fill(rs, rs + len, 0.0);
    if (a.layer) {
      for (size_t k = 0; k < c; k++) {
        const float* row = x + k * inner;
        for (size_t i = 0; i < len; i++) mu[i] += row[i];
      }
      for (size_t i = 0; i < len; i++) mu[i] *= inv_c;
    }
    for (size_t k = 0; k < c; k++) {
      const float* row = x + k * inner;
      for (size_t i = 0; i < len; i++) {
        const double d = row[i] - mu[i];
        rs[i] += d * d;
      }
    }
    for (size_t i = 0; i < len; i++) {
      rs[i] = 1.0 / std::sqrt(rs[i] * inv_c + a.eps);
      if (a.layer) a.mean[o * inner + i0 + i] = static_cast<float>(mu[i]);
      a.rstd[o * inner + i0 + i] = static_cast<float>(rs[i]);
    }
    for (size_t k = 0; k < c; k++) {
      const float* row = x + k * inner;
      float* out = y + k * inner;
      const float wk = a.w ? a.w[k] : 1.0f;
      const float bk = a.b ? a.b[k] : 0.0f;
      for (size_t i = 0; i < len; i++) out[i] = static_cast<float>((row[i] - mu[i]) * rs[i]) * wk + bk;
    }
  });
}

struct NormBackwardArgs {
  bool layer;
  const float* x;
  size_t outer, c, inner;
  const float* w;     // null: 1
  const float* mean;  // used for layer only
  const float* rstd;
  const float* gy;
  float* gx;
  float* gw;  // may be null
  float* gb;  // may be null
};

// With xh = (x - mean) * rstd and g = gy * w, over each group of c values:
//   gx = rstd * (g - mean(g) - xh * mean(g * xh))      (rms: no mean(g) term, xh = x * rstd)
//   gw = sum over all positions of gy * xh,  gb = sum of gy.
// gw / gb are accumulated per thread in double (one c-long buffer each) and combined in thread order.
void norm_backward(const NormBackwardArgs& a) {
  const size_t c = a.c, inner = a.inner;
  const double inv_c = c ? 1.0 / static_cast<double>(c) : 0.0;
  const bool rows = inner == 1;
  const size_t T = rows ? 1 : norm_tile(c, inner);
  const size_t tiles = rows ? 1 : (inner + T - 1) / T;
  const size_t items = rows ? a.outer : a.outer * tiles;
  const size_t work = a.outer * c * inner;
  const int nt = (work >= kParallelMin && items > 1) ? omp_get_max_threads() : 1;
  const bool want_w = a.gw != nullptr, want_b = a.gb != nullptr;
  std::vector<double> pw(want_w ? static_cast<size_t>(nt) * c : 0, 0.0);
  std::vector<double> pb(want_b ? static_cast<size_t>(nt) * c : 0, 0.0);

  // One row (inner == 1). The flags (w given, gw wanted, gb wanted) are template parameters so that every variant of
  // the loops is a plain vectorised loop.
  auto row_body = [&](size_t r, int tid, auto has_w, auto has_gw, auto has_gb) {
    constexpr bool kW = decltype(has_w)::value;
    constexpr bool kGW = decltype(has_gw)::value;
    constexpr bool kGB = decltype(has_gb)::value;
    const float* x = a.x + r * c;
    const float* gy = a.gy + r * c;
    float* gx = a.gx + r * c;
    const double mu = a.layer ? static_cast<double>(a.mean[r]) : 0.0;
    const double rs = a.rstd[r];
    const float* w = a.w;  // a local copy: through the captured struct GCC vectorises with gathers
    double A = 0.0, B = 0.0;
#pragma omp simd reduction(+ : A, B)
    for (size_t i = 0; i < c; i++) {
      const double xh = (x[i] - mu) * rs;
      const double g = kW ? static_cast<double>(gy[i]) * w[i] : static_cast<double>(gy[i]);
      A += g;
      B += g * xh;
    }
    A = a.layer ? A * inv_c : 0.0;
    B *= inv_c;
    double* accw = kGW ? pw.data() + static_cast<size_t>(tid) * c : nullptr;
    double* accb = kGB ? pb.data() + static_cast<size_t>(tid) * c : nullptr;
    for (size_t i = 0; i < c; i++) {
      const double xh = (x[i] - mu) * rs;
      const double g = kW ? static_cast<double>(gy[i]) * w[i] : static_cast<double>(gy[i]);
      gx[i] = static_cast<float>(rs * (g - A - xh * B));
      if constexpr (kGW) accw[i] += gy[i] * xh;
      if constexpr (kGB) accb[i] += gy[i];
    }
  };

  // A tile of positions of one outer index (inner > 1); see norm_channels.
  auto tile_body = [&](size_t blk, int tid) {
    const size_t o = blk / tiles;
    const size_t i0 = (blk % tiles) * T;
    const size_t len = std::min(T, inner - i0);
    const size_t base = o * c * inner + i0;
    double mu[kNormTileMax], rs[kNormTileMax], A[kNormTileMax], B[kNormTileMax];
    const float* mean_p = a.layer ? a.mean + o * inner + i0 : nullptr;
    const float* rstd_p = a.rstd + o * inner + i0;
    for (size_t i = 0; i < len; i++) {
      mu[i] = mean_p ? static_cast<double>(mean_p[i]) : 0.0;
      rs[i] = rstd_p[i];
      A[i] = 0.0;
      B[i] = 0.0;
    }
    double* accw = want_w ? pw.data() + static_cast<size_t>(tid) * c : nullptr;
    double* accb = want_b ? pb.data() + static_cast<size_t>(tid) * c : nullptr;
    for (size_t k = 0; k < c; k++) {
      const float* x = a.x + base + k * inner;
      const float* gy = a.gy + base + k * inner;
      const double wk = a.w ? a.w[k] : 1.0;
      double sw = 0.0, sb = 0.0;
#pragma omp simd reduction(+ : sw, sb)
      for (size_t i = 0; i < len; i++) {
        const double xh = (x[i] - mu[i]) * rs[i];
        const double g = gy[i] * wk;
        A[i] += g;
        B[i] += g * xh;
        sw += gy[i] * xh;
        sb += gy[i];
      }
      if (accw) accw[k] += sw;
      if (accb) accb[k] += sb;
    }
    for (size_t i = 0; i < len; i++) {
      A[i] = a.layer ? A[i] * inv_c : 0.0;
      B[i] *= inv_c;
    }
    for (size_t k = 0; k < c; k++) {
      const float* x = a.x + base + k * inner;
      const float* gy = a.gy + base + k * inner;
      float* gx = a.gx + base + k * inner;
      const double wk = a.w ? a.w[k] : 1.0;
      for (size_t i = 0; i < len; i++) {
        const double xh = (x[i] - mu[i]) * rs[i];
        gx[i] = static_cast<float>(rs[i] * (gy[i] * wk - A[i] - xh * B[i]));
      }
    }
  };

  auto run = [&](auto body) {
    if (nt > 1) {
#pragma omp parallel num_threads(nt)
      {
        const int tid = omp_get_thread_num();
#pragma omp for schedule(static)
        for (size_t it = 0; it < items; it++) body(it, tid);
      }
    } else {
      for (size_t it = 0; it < items; it++) body(it, 0);
    }
  };
  if (!rows) {
    run(tile_body);
  } else {
    with_flag(a.w != nullptr, [&](auto has_w) {
      with_flags(want_w, want_b, [&](auto has_gw, auto has_gb) {
        run([&](size_t r, int tid) { row_body(r, tid, has_w, has_gw, has_gb); });
      });
    });
  }
  for (size_t k = 0; k < c; k++) {
    double sw = 0.0, sb = 0.0;
    for (int t = 0; t < nt; t++) {
      if (want_w) sw += pw[static_cast<size_t>(t) * c + k];
      if (want_b) sb += pb[static_cast<size_t>(t) * c + k];
    }
    if (want_w) a.gw[k] = static_cast<float>(sw);
    if (want_b) a.gb[k] = static_cast<float>(sb);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Strided copy (gather into dense) and strided accumulate (scatter-add from dense)
// ---------------------------------------------------------------------------------------------------------------
//
// All move data between a dense array and a strided view of the same shape; kMode selects the direction:
// kGather: dense = view; kAccum: view += dense; kScatter: view = dense (a plain write: no read of the view, so fresh
// output pages are faulted in once, not twice).
constexpr int kGather = 0, kAccumMode = 1, kScatter = 2;

// One row: count elements, the view's run starting at s with stride `stride`.
template <int kMode>
inline void move_row(float* dense, float* s, int64_t stride, size_t count) {
  constexpr bool kAccum = kMode == kAccumMode;
  if (kMode == kScatter) {
    if (stride == 1)
      std::memcpy(s, dense, count * sizeof(float));
    else
      for (size_t i = 0; i < count; i++) s[i * stride] = dense[i];
  } else if (kAccum) {
    if (stride == 1) {
      for (size_t i = 0; i < count; i++) s[i] += dense[i];
    } else {
      for (size_t i = 0; i < count; i++) s[i * stride] += dense[i];  // stride 0 (overlap) stays sequential here
    }
  } else {
    if (stride == 1)
      std::memcpy(dense, s, count * sizeof(float));
    else if (stride == 0)
      std::fill(dense, dense + count, s[0]);
    else
      for (size_t i = 0; i < count; i++) dense[i] = s[i * stride];
  }
}

#if defined(__AVX512F__)
// In-register transpose of a 16 x 16 block held in r[0..15]: unpack pairs of rows, shuffle 2 x 2 blocks within lanes,
// then two rounds of 128-bit lane shuffles.
// (The full-mask merge forms used for unpack and shuffle_f32x4 are the same instructions as the plain intrinsics,
// which pass _mm512_undefined_ps() as merge source and so trip a GCC 12 -Wmaybe-uninitialized false positive.)
inline void transpose16(__m512 r[16]) {
  __m512 t[16];
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_mask_unpacklo_ps(r[i], 0xFFFF, r[i], r[i + 1]);
    t[i + 1] = _mm512_mask_unpackhi_ps(r[i], 0xFFFF, r[i], r[i + 1]);
  }
  for (int i = 0; i < 16; i += 4) {
    r[i] = _mm512_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(1, 0, 1, 0));
    r[i + 1] = _mm512_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(3, 2, 3, 2));
    r[i + 2] = _mm512_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(1, 0, 1, 0));
    r[i + 3] = _mm512_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(3, 2, 3, 2));
  }
  for (int i = 0; i < 4; i++) {
    t[i] = _mm512_mask_shuffle_f32x4(r[i], 0xFFFF, r[i], r[i + 4], 0x88);
    t[i + 4] = _mm512_mask_shuffle_f32x4(r[i], 0xFFFF, r[i], r[i + 4], 0xdd);
    t[i + 8] = _mm512_mask_shuffle_f32x4(r[i + 8], 0xFFFF, r[i + 8], r[i + 12], 0x88);
    t[i + 12] = _mm512_mask_shuffle_f32x4(r[i + 8], 0xFFFF, r[i + 8], r[i + 12], 0xdd);
  }
  for (int i = 0; i < 8; i++) {
    r[i] = _mm512_mask_shuffle_f32x4(t[i], 0xFFFF, t[i], t[i + 8], 0x88);
    r[i + 8] = _mm512_mask_shuffle_f32x4(t[i], 0xFFFF, t[i], t[i + 8], 0xdd);
  }
}
#elif defined(__AVX__)
// In-register transpose of an 8 x 8 block held in r[0..7].
inline void transpose8(__m256 r[8]) {
  const __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
  const __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
  const __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
  const __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
  const __m256 s0 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(1, 0, 1, 0));
  const __m256 s1 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(3, 2, 3, 2));
  const __m256 s2 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(1, 0, 1, 0));
  const __m256 s3 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(3, 2, 3, 2));
  const __m256 s4 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(1, 0, 1, 0));
  const __m256 s5 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(3, 2, 3, 2));
  const __m256 s6 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(1, 0, 1, 0));
  const __m256 s7 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(3, 2, 3, 2));
  r[0] = _mm256_permute2f128_ps(s0, s4, 0x20);
  r[1] = _mm256_permute2f128_ps(s1, s5, 0x20);
  r[2] = _mm256_permute2f128_ps(s2, s6, 0x20);
  r[3] = _mm256_permute2f128_ps(s3, s7, 0x20);
  r[4] = _mm256_permute2f128_ps(s0, s4, 0x31);
  r[5] = _mm256_permute2f128_ps(s1, s5, 0x31);
  r[6] = _mm256_permute2f128_ps(s2, s6, 0x31);
  r[7] = _mm256_permute2f128_ps(s3, s7, 0x31);
}
#endif

// A 2-D tile of a transposed transfer: dense[r * ld + c] <-> s[r + c * ls] for r in [r0, r1), c in [c0, c1).
// The view is unit-stride along r and the dense array along c, so square blocks are loaded along one, transposed in
// registers and stored along the other; edges fall back to scalar code. With AVX-512 the blocks are 16 x 16, so each
// block reads and writes whole 64-byte lines (strided_move aligns r0 for the view): strides that are multiples of
// 4 KiB (common: 32768 for a 64x64x8 volume) map every line of a column block to the same cache set, and lines
// touched only partly would be evicted before their other half is used. Column blocks are the outer loop so that
// each of the 16 view columns in flight is walked sequentially, which the hardware prefetchers follow (measured
// ~1.7x faster than rows outer for the NCTHW <-> NTHWC permutes).
template <int kMode>
void transpose_tile(float* dense, int64_t ld, float* s, int64_t ls, size_t r0, size_t r1, size_t c0, size_t c1) {
  constexpr bool kAccum = kMode != kGather;  // accumulate and scatter both write the view
  constexpr bool kAdd = kMode == kAccumMode;
  size_t rv = r0, cv = c0;  // end of the part covered by whole blocks
#if defined(__AVX512F__)
  rv = r0 + ((r1 - r0) & ~size_t(15));
  cv = c0 + ((c1 - c0) & ~size_t(15));
  for (size_t c = c0; c < cv; c += 16) {
    for (size_t r = r0; r < rv; r += 16) {
      __m512 v[16];
      if (kAccum) {
        for (int k = 0; k < 16; k++) v[k] = _mm512_loadu_ps(dense + (r + k) * ld + c);
        transpose16(v);
        // All loads of the view before any store: its lines are often a multiple of 4 KiB apart, and a load issued
        // after a store to an address with the same low 12 bits stalls on a false dependency (4K aliasing).
        if (kAdd) {
          __m512 w[16];
          for (int k = 0; k < 16; k++) w[k] = _mm512_loadu_ps(s + r + (c + k) * ls);
          for (int k = 0; k < 16; k++) _mm512_storeu_ps(s + r + (c + k) * ls, _mm512_add_ps(w[k], v[k]));
        } else {
          for (int k = 0; k < 16; k++) _mm512_storeu_ps(s + r + (c + k) * ls, v[k]);
        }
      } else {
        for (int k = 0; k < 16; k++) v[k] = _mm512_loadu_ps(s + r + (c + k) * ls);
        transpose16(v);
        for (int k = 0; k < 16; k++) _mm512_storeu_ps(dense + (r + k) * ld + c, v[k]);
      }
    }
  }
#elif defined(__AVX__)
  rv = r0 + ((r1 - r0) & ~size_t(7));
  cv = c0 + ((c1 - c0) & ~size_t(7));
  for (size_t c = c0; c < cv; c += 8) {
    for (size_t r = r0; r < rv; r += 8) {
      __m256 v[8];
      if (kAccum) {
        for (int k = 0; k < 8; k++) v[k] = _mm256_loadu_ps(dense + (r + k) * ld + c);
        transpose8(v);
        if (kAdd) {
          __m256 w[8];  // loads before stores, as in the AVX-512 path
          for (int k = 0; k < 8; k++) w[k] = _mm256_loadu_ps(s + r + (c + k) * ls);
          for (int k = 0; k < 8; k++) _mm256_storeu_ps(s + r + (c + k) * ls, _mm256_add_ps(w[k], v[k]));
        } else {
          for (int k = 0; k < 8; k++) _mm256_storeu_ps(s + r + (c + k) * ls, v[k]);
        }
      } else {
        for (int k = 0; k < 8; k++) v[k] = _mm256_loadu_ps(s + r + (c + k) * ls);
        transpose8(v);
        for (int k = 0; k < 8; k++) _mm256_storeu_ps(dense + (r + k) * ld + c, v[k]);
      }
    }
  }
#endif
  auto scalar = [&](size_t ra, size_t rb, size_t ca, size_t cb) {
    for (size_t r = ra; r < rb; r++)
      for (size_t c = ca; c < cb; c++) {
        if (kAdd)
          s[r + c * ls] += dense[r * ld + c];
        else if (kAccum)
          s[r + c * ls] = dense[r * ld + c];
        else
          dense[r * ld + c] = s[r + c * ls];
      }
  };
  scalar(r0, rv, cv, c1);
  scalar(rv, r1, c0, c1);
}

// Tiles a transposed transfer is cut into (rows along the view's unit-stride dim x columns); see strided_move.
constexpr size_t kTransposeRows = 256;
constexpr size_t kTransposeCols = 64;

// True when no two elements of the view share a memory location. Sufficient test: with dims sorted by stride, each
// stride exceeds the furthest reach of all the smaller ones. backend.ts promises stridedAccumulate views that pass;
// a view that fails is still accumulated correctly, on one thread.
bool view_is_injective(const Layout& L) {
  std::vector<std::pair<int64_t, int64_t>> dims;
  for (int d = 0; d < L.nd; d++)
    if (L.shape[d] > 1) dims.emplace_back(L.st[0][d], L.shape[d]);
  std::sort(dims.begin(), dims.end());
  __int128 reach = 0;
  for (const auto& [stride, size] : dims) {
    if (stride <= reach) return false;
    reach += static_cast<__int128>(stride) * (size - 1);
  }
  return true;
}

template <int kMode>
void strided_move(float* dense, float* data, int64_t offset, const Layout& L, size_t n, bool parallel_ok) {
  const int nd = L.nd;
  const int64_t* st = L.st[0];
  const int64_t s_in = st[nd - 1];
  const size_t min_parallel = parallel_ok ? kParallelMin : std::numeric_limits<size_t>::max();

  // Transposed transfer: the innermost (dense) dim is not unit-stride in the view but another dim p is, as in a
  // permute that moves the channel axis. Walking rows would touch one view cache line per element; tiling (p,
  // innermost) uses each line fully.
  int p = -1;
  if (nd >= 2 && s_in != 1 && L.shape[nd - 1] >= 8) {
    for (int d = nd - 2; d >= 0; d--)
      if (st[d] == 1 && L.shape[d] >= 8) {
        p = d;
        break;
      }
  }
  if (p >= 0) {
    int64_t dense_st[kMaxDims];
    dense_st[nd - 1] = 1;
    for (int d = nd - 2; d >= 0; d--) dense_st[d] = dense_st[d + 1] * L.shape[d + 1];
    const size_t R = static_cast<size_t>(L.shape[p]);
    const size_t C = static_cast<size_t>(L.shape[nd - 1]);
    // Row tiles start where the view's columns are 64-byte aligned (when every stride keeps that alignment), so that
    // transpose_tile's blocks cover whole cache lines of the view: rows [0, rphase) form a first, partial tile.
    bool aligned_strides = true;
    for (int d = 0; d < nd; d++)
      if (d != p && st[d] % 16 != 0) aligned_strides = false;
    const size_t misalign = (reinterpret_cast<uintptr_t>(data + offset) / sizeof(float)) % 16;
    const size_t rphase = aligned_strides ? std::min(R, (16 - misalign) % 16) : 0;
    const size_t tr = (rphase ? 1 : 0) + (R - rphase + kTransposeRows - 1) / kTransposeRows;
    const size_t tc = (C + kTransposeCols - 1) / kTransposeCols;
    const size_t others = n / (R * C);
    parallel_for(others * tr * tc, parallel_ok ? n : 0, [&](size_t item) {
      size_t o = item / (tr * tc);
      const size_t t = item % (tr * tc);
      // Offsets of this item's position in the remaining dims (all but p and the innermost).
      int64_t so = offset, dof = 0;
      for (int d = nd - 2; d >= 0; d--) {
        if (d == p) continue;
        const size_t sz = static_cast<size_t>(L.shape[d]);
        const int64_t i = static_cast<int64_t>(o % sz);
        o /= sz;
        so += i * st[d];
        dof += i * dense_st[d];
      }
      const size_t rt = t / tc, c0 = (t % tc) * kTransposeCols;
      const size_t r0 = rphase ? (rt == 0 ? 0 : rphase + (rt - 1) * kTransposeRows) : rt * kTransposeRows;
      const size_t r1 = rphase && rt == 0 ? rphase : std::min(R, r0 + kTransposeRows);
      transpose_tile<kMode>(dense + dof, dense_st[p], data + so, s_in, r0, r1, c0, std::min(C, c0 + kTransposeCols));
    });
    return;
  }

  const int64_t base[1] = {offset};
  parallel_range(
      n,
      [&](size_t lo, size_t hi) {
        walk_rows<1>(L, base, lo, hi, [&](size_t pos, const int64_t* off, size_t cnt) {
          move_row<kMode>(dense + pos, data + off[0], s_in, cnt);
        });
      },
      min_parallel);
}

// ---------------------------------------------------------------------------------------------------------------
// Optimiser and misc
// ---------------------------------------------------------------------------------------------------------------

struct AdamW {
  double lr, beta1, beta2, eps, wd;
  int64_t step;
};

// torch.optim.AdamW (single-tensor path) step by step, with the float roundings of PyTorch's vectorised CPU kernels
// (checked bit-for-bit against torch 1.13): each Python-float scalar becomes a float operand; add_(g, alpha) and
// addcmul_ are fused multiply-adds; addcdiv_ computes (value * m) / denom; the bias corrections are in double.
void adamw(float* p, const float* g, float* m, float* v, size_t n, const AdamW& h) {
  const float decay = static_cast<float>(1.0 - h.lr * h.wd);
  const float b1 = static_cast<float>(h.beta1), one_b1 = static_cast<float>(1.0 - h.beta1);
  const float b2 = static_cast<float>(h.beta2), one_b2 = static_cast<float>(1.0 - h.beta2);
  const double bc1 = 1.0 - std::pow(h.beta1, static_cast<double>(h.step));
  const double bc2 = 1.0 - std::pow(h.beta2, static_cast<double>(h.step));
  const float neg_step = static_cast<float>(-(h.lr / bc1));
  const float bc2_sqrt = static_cast<float>(std::sqrt(bc2));
  const float eps = static_cast<float>(h.eps);
  constexpr size_t kBlock = 512;  // sqrt(v) is taken a block at a time (vectorised; see sqrt_array)
  parallel_range(n, [&](size_t lo, size_t hi) {
    float denom[kBlock];
    for (size_t b = lo; b < hi; b += kBlock) {
      const size_t len = std::min(kBlock, hi - b);
      float* pp = p + b;
      const float* gg = g + b;
      float* mm = m + b;
      float* vv = v + b;
      for (size_t i = 0; i < len; i++) {
        pp[i] *= decay;
        mm[i] = emath::fmadd(gg[i], one_b1, mm[i] * b1);
        vv[i] = emath::fmadd(one_b2 * gg[i], gg[i], vv[i] * b2);
      }
      emath::sqrt_array(vv, denom, len);
      for (size_t i = 0; i < len; i++) pp[i] = pp[i] + (neg_step * mm[i]) / (denom[i] / bc2_sqrt + eps);
    }
  });
}

double sum_squares(const float* x, size_t n) {
  const int nt = omp_get_max_threads();
  std::vector<double> part(nt, 0.0);
  parallel_range(n, [&](size_t b, size_t e) {
    // A local pointer and a zero-based index: with the captured pointer GCC falls back to gather instructions.
    const float* xb = x + b;
    double s = 0.0;
#pragma omp simd reduction(+ : s)
    for (size_t i = 0; i < e - b; i++) s += static_cast<double>(xb[i]) * xb[i];
    part[omp_get_thread_num()] = s;
  });
  double total = 0.0;
  for (double s : part) total += s;  // fixed order: same result on every run
  return total;
}

// ---------------------------------------------------------------------------------------------------------------
// N-API entry points
// ---------------------------------------------------------------------------------------------------------------

napi_value Fill(napi_env env, napi_callback_info info) {
  return guarded(env, [&]() -> napi_value {
    const char* fn = "fill";
    Args args(env, info, 2, fn);
    F32 out = args.f32(0, "out");
    const float value = static_cast<float>(any_number(env, info, 2, 1, fn, "value"));
    parallel_range(out.length, [&](size_t b, size_t e) { std::fill(out.data + b, out.data + e, value); });
    return nullptr;
  });
}

napi_value StridedCopy(napi_env env, napi_callback_info info) {
  return guarded(env, [&]() -> napi_value {
    const char* fn = "stridedCopy";
    Args args(env, info, 5, fn);
    F32 src = args.f32(0, "src");
    const int64_t offset = args.i64(1, "offset");
    const std::vector<int64_t> shape = args.i64_array(3, "shape");
    const std::vector<int64_t> strides = args.i64_array(2, "strides", static_cast<long>(shape.size()));
    F32 out = args.f32(4, "out");
    const size_t n = numel(shape, "shape");
    need_len(out, n, "out", fn);
    check_view(src, offset, strides, shape, n, "src", fn);
    if (n == 0) return nullptr;
    const std::vector<int64_t>* st[1] = {&strides};
    strided_move<kGather>(out.data, src.data, offset, coalesce(shape, st, 1), n, true);
    return nullptr;
  });
}

// stridedAccumulate (dst[view] += src) and stridedScatter (dst[view] = src) share their arguments:
// (src, shape, dst, offset, strides).
template <int kMode>
napi_value dense_to_view(napi_env env, napi_callback_info info, const char* fn) {
  return guarded(env, [&]() -> napi_value {
    Args args(env, info, 5, fn);
    F32 src = args.f32(0, "src");
    const std::vector<int64_t> shape = args.i64_array(1, "shape");
    F32 dst = args.f32(2, "dst");
    const int64_t offset = args.i64(3, "offset");
    const std::vector<int64_t> strides = args.i64_array(4, "strides", static_cast<long>(shape.size()));
    const size_t n = numel(shape, "shape");
    need_len(src, n, "src", fn);
    check_view(dst, offset, strides, shape, n, "dst", fn);
    if (n == 0) return nullptr;
    const std::vector<int64_t>* st[1] = {&strides};
    const Layout L = coalesce(shape, st, 1);
    const bool injective = view_is_injective(L);
    // Writing through a view whose elements overlap would make the result depend on the order of the writes; adding
    // through one is well defined and just runs on one thread.
    if (kMode == kScatter && !injective) range_error(std::string(fn) + ": the destination view overlaps itself");
    strided_move<kMode>(src.data, dst.data, offset, L, n, injective);
    return nullptr;
  });
}

napi_value StridedAccumulate(napi_env env, napi_callback_info info) { return dense_to_view<kAccumMode>(env, info, "stridedAccumulate"); }
napi_value StridedScatter(napi_env env, napi_callback_info info) { return dense_to_view<kScatter>(env, info, "stridedScatter"); }

napi_value Unary(napi_env env, napi_callback_info info) {
  return guarded(env, [&]() -> napi_value {
    const char* fn = "unary";
    Args args(env, info, 3, fn);
    const auto op = static_cast<UnaryOp>(parse_op(args.str(0, "op"), kUnaryNames, fn, "unary op"));
    F32 x = args.f32(1, "x");
    F32 out = args.f32(2, "out");
    same_len(x, out.length, "x", fn);
    unary_forward(op, x.data, out.data, out.length);
    return nullptr;
  });
}

napi_value UnaryBackward(napi_env env, napi_callback_info info) {
  return guarded(env, [&]() -> napi_value {
    const char* fn = "unaryBackward";
    Args args(env, info, 5, fn);
    const auto op = static_cast<UnaryOp>(parse_op(args.str(0, "op"), kUnaryNames, fn, "unary op"));
    F32 x = args.f32(1, "x");
    F32 y = args.f32(2, "y");
    F32 gy = args.f32(3, "gy");
    F32 gx = args.f32(4, "gx");
    const size_t n = gx.length;
    same_len(x, n, "x", fn);
    same_len(y, n, "y", fn);
    same_len(gy, n, "gy", fn);
    unary_backward(op, x.data, y.data, gy.data, gx.data, n);
    return nullptr;
  });
}

napi_value Affine(napi_env env, napi_callback_info info) {
  return guarded(env, [&]() -> napi_value {
    const char* fn = "affine";
    Args args(env, info, 4, fn);
    F32 x = args.f32(0, "x");
    const float a = static_cast<float>(any_number(env, info, 4, 1, fn, "a"));
    const float b = static_cast<float>(any_number(env, info, 4, 2, fn, "b"));
    F32 out = args.f32(3, "out");
    same_len(x, out.length, "x", fn);
    map1(x.data, out.data, out.length, [a, b](float v) { return a * v + b; });
    return nullptr;
  });
}

napi_value PowScalar(napi_env env, napi_callback_info info) {
  return guarded(env, [&]() -> napi_value {
    const char* fn = "powScalar";
    Args args(env, info, 3, fn);
    F32 x = args.f32(0, "x");
    const float p = static_cast<float>(any_number(env, info, 3, 1, fn, "p"));
    F32 out = args.f32(2, "out");
    same_len(x, out.length, "x", fn);
    pow_scalar(x.data, p, out.data, out.length);
    return nullptr;
  });
}

napi_value Binary(napi_env env, napi_callback_info info) {
  return guarded(env, [&]() -> napi_value {
    const char* fn = "binary";
    Args args(env, info, 9, fn);
    const auto op = static_cast<BinaryOp>(parse_op(args.str(0, "op"), kBinaryNames, fn, "binary op"));
    const std::vector<int64_t> shape = args.i64_array(7, "shape");
    const long nd = static_cast<long>(shape.size());
    F32 a = args.f32(1, "a");
    const int64_t a_off = args.i64(2, "aOffset");
    const std::vector<int64_t> a_st = args.i64_array(3, "aStrides", nd);
    F32 b = args.f32(4, "b");
    const int64_t b_off = args.i64(5, "bOffset");
    const std::vector<int64_t> b_st = args.i64_array(6, "bStrides", nd);
    F32 out = args.f32(8, "out");
    const size_t n = numel(shape, "shape");
    need_len(out, n, "out", fn);
    check_view(a, a_off, a_st, shape, n, "a", fn);
    check_view(b, b_off, b_st, shape, n, "b", fn);
    if (n == 0) return nullptr;
    const std::vector<int64_t>* st[2] = {&a_st, &b_st};
    binary(op, a.data, a_off, b.data, b_off, coalesce(shape, st, 2), out.data, n);
    return nullptr;
  });
}

napi_value Axpy(napi_env env, napi_callback_info info) {
  return guarded(env, [&]() -> napi_value {
    const char* fn = "axpy";
    Args args(env, info, 3, fn);
    F32 acc = args.f32(0, "acc");
    F32 x = args.f32(1, "x");
    const float scale = static_cast<float>(any_number(env, info, 3, 2, fn, "scale"));
    same_len(x, acc.length, "x", fn);
    float* pa = acc.data;
    const float* px = x.data;
    parallel_range(acc.length, [&](size_t b, size_t e) {
      for (size_t i = b; i < e; i++) pa[i] += px[i] * scale;
    });
    return nullptr;
  });
}

const char* const kReduceNames[] = {"sum", "max"};

napi_value Reduce(napi_env env, napi_callback_info info) {
  return guarded(env, [&]() -> napi_value {
    const char* fn = "reduce";
    Args args(env, info, 6, fn);
    const bool is_max = parse_op(args.str(0, "op"), kReduceNames, fn, "reduce op") == 1;
    F32 x = args.f32(1, "x");
    const int64_t outer = args.i64(2, "outer"), r = args.i64(3, "r"), inner = args.i64(4, "inner");
    F32 out = args.f32(5, "out");
    need_len(x, product3(outer, r, inner, "outer * r * inner"), "x", fn);
    const size_t m = numel({outer, inner}, "outer * inner");
    need_len(out, m, "out", fn);
    if (is_max && r == 0 && m > 0) range_error(std::string(fn) + ": 'max' over an empty axis (r = 0)");
    if (m == 0) return nullptr;
    reduce(is_max, x.data, as_size(outer), as_size(r), as_size(inner), out.data);
    return nullptr;
  });
}

napi_value Softmax(napi_env env, napi_callback_info info) {
  return guarded(env, [&]() -> napi_value {
    const char* fn = "softmax";
    Args args(env, info, 5, fn);
    F32 x = args.f32(0, "x");
    const int64_t rows = args.i64(1, "rows"), cols = args.i64(2, "cols");
    const bool log = args.boolean(3, "log");
    F32 out = args.f32(4, "out");
    const size_t n = numel({rows, cols}, "rows * cols");
    need_len(x, n, "x", fn);
    need_len(out, n, "out", fn);
    if (n == 0) return nullptr;
    const size_t c = as_size(cols);
    parallel_for(as_size(rows), n, [&](size_t r) { softmax_row(x.data + r * c, out.data + r * c, c, log); });
    return nullptr;
  });
}

napi_value SoftmaxBackward(napi_env env, napi_callback_info info) {
  return guarded(env, [&]() -> napi_value {
    const char* fn = "softmaxBackward";
    Args args(env, info, 6, fn);
    F32 y = args.f32(0, "y");
    F32 gy = args.f32(1, "gy");
    const int64_t rows = args.i64(2, "rows"), cols = args.i64(3, "cols");
    const bool log = args.boolean(4, "log");
    F32 gx = args.f32(5, "gx");
    const size_t n = numel({rows, cols}, "rows * cols");
    need_len(y, n, "y", fn);
    need_len(gy, n, "gy", fn);
    need_len(gx, n, "gx", fn);
    if (n == 0) return nullptr;
    const size_t c = as_size(cols);
    parallel_for(as_size(rows), n, [&](size_t r) {
      softmax_backward_row(y.data + r * c, gy.data + r * c, gx.data + r * c, c, log);
    });
    return nullptr;
  });
}

const char* const kNormNames[] = {"layer", "rms"};

// Optional per-channel parameter: null, or at least c entries.
const float* optional_channels(const F32& a, size_t c, const char* name, const char* fn) {
  if (a.null) return nullptr;
  need_len(a, c, name, fn);
  return a.data;
}

napi_value Norm(napi_env env, napi_callback_info info) {
  return guarded(env, [&]() -> napi_value {
    const char* fn = "norm";
    Args args(env, info, 11, fn);
    NormArgs a;
    a.layer = parse_op(args.str(0, "kind"), kNormNames, fn, "norm kind") == 0;
    F32 x = args.f32(1, "x");
    const int64_t outer = args.i64(2, "outer"), c = args.i64(3, "c"), inner = args.i64(4, "inner");
    F32 w = args.f32_or_null(5, "w");
    F32 b = args.f32_or_null(6, "b");
    a.eps = args.f64(7, "eps");
    F32 y = args.f32(8, "y");
    F32 mean = args.f32_or_null(9, "mean");
    F32 rstd = args.f32(10, "rstd");
    const size_t n = product3(outer, c, inner, "outer * c * inner");
    const size_t positions = numel({outer, inner}, "outer * inner");
    need_len(x, n, "x", fn);
    need_len(y, n, "y", fn);
    a.w = optional_channels(w, as_size(c), "w", fn);
    a.b = optional_channels(b, as_size(c), "b", fn);
    if (a.layer && mean.null) type_error(std::string(fn) + ": argument 'mean' must be a Float32Array for kind 'layer'");
    if (!mean.null) need_len(mean, positions, "mean", fn);
    need_len(rstd, positions, "rstd", fn);
    if (positions == 0) return nullptr;
    a.x = x.data;
    a.outer = as_size(outer);
    a.c = as_size(c);
    a.inner = as_size(inner);
    a.y = y.data;
    a.mean = a.layer ? mean.data : nullptr;
    a.rstd = rstd.data;
    if (a.inner == 1)
      norm_rows(a);
    else
      norm_channels(a);
    // rms has no mean; a supplied mean array gets zeros (as the reference backend writes).
    if (!a.layer && !mean.null)
      parallel_range(positions, [&](size_t lo, size_t hi) { std::fill(mean.data + lo, mean.data + hi, 0.0f); });
    return nullptr;
  });
}

napi_value NormBackward(napi_env env, napi_callback_info info) {
  return guarded(env, [&]() -> napi_value {
    const char* fn = "normBackward";
    Args args(env, info, 12, fn);
    NormBackwardArgs a;
    a.layer = parse_op(args.str(0, "kind"), kNormNames, fn, "norm kind") == 0;
    F32 x = args.f32(1, "x");
    const int64_t outer = args.i64(2, "outer"), c = args.i64(3, "c"), inner = args.i64(4, "inner");
    F32 w = args.f32_or_null(5, "w");
    F32 mean = args.f32_or_null(6, "mean");
    F32 rstd = args.f32(7, "rstd");
    F32 gy = args.f32(8, "gy");
    F32 gx = args.f32(9, "gx");
    F32 gw = args.f32_or_null(10, "gw");
    F32 gb = args.f32_or_null(11, "gb");
    const size_t n = product3(outer, c, inner, "outer * c * inner");
    const size_t positions = numel({outer, inner}, "outer * inner");
    need_len(x, n, "x", fn);
    need_len(gy, n, "gy", fn);
    need_len(gx, n, "gx", fn);
    a.w = optional_channels(w, as_size(c), "w", fn);
    if (a.layer && mean.null) type_error(std::string(fn) + ": argument 'mean' must be a Float32Array for kind 'layer'");
    if (!mean.null) need_len(mean, positions, "mean", fn);  // checked for rms too, though unused there
    need_len(rstd, positions, "rstd", fn);
    if (!gw.null) need_len(gw, as_size(c), "gw", fn);
    if (!gb.null) need_len(gb, as_size(c), "gb", fn);
    a.x = x.data;
    a.outer = as_size(outer);
    a.c = as_size(c);
    a.inner = as_size(inner);
    a.mean = a.layer ? mean.data : nullptr;
    a.rstd = rstd.data;
    a.gy = gy.data;
    a.gx = gx.data;
    a.gw = gw.null ? nullptr : gw.data;
    a.gb = gb.null ? nullptr : gb.data;
    if (positions == 0 || a.c == 0) {  // no groups: parameter gradients are empty sums
      if (a.gw) std::fill(a.gw, a.gw + a.c, 0.0f);
      if (a.gb) std::fill(a.gb, a.gb + a.c, 0.0f);
      return nullptr;
    }
    norm_backward(a);
    return nullptr;
  });
}

napi_value AdamWStep(napi_env env, napi_callback_info info) {
  return guarded(env, [&]() -> napi_value {
    const char* fn = "adamw";
    Args args(env, info, 10, fn);
    F32 p = args.f32(0, "p");
    F32 g = args.f32(1, "g");
    F32 m = args.f32(2, "m");
    F32 v = args.f32(3, "v");
    AdamW h;
    h.lr = args.f64(4, "lr");
    h.beta1 = args.f64(5, "beta1");
    h.beta2 = args.f64(6, "beta2");
    h.eps = args.f64(7, "eps");
    h.wd = args.f64(8, "weightDecay");
    h.step = args.i64(9, "step", 1);
    const size_t n = p.length;
    same_len(g, n, "g", fn);
    same_len(m, n, "m", fn);
    same_len(v, n, "v", fn);
    adamw(p.data, g.data, m.data, v.data, n, h);
    return nullptr;
  });
}

napi_value SumSquares(napi_env env, napi_callback_info info) {
  return guarded(env, [&]() -> napi_value {
    Args args(env, info, 1, "sumSquares");
    F32 x = args.f32(0, "x");
    return make_number(env, sum_squares(x.data, x.length));
  });
}

}  // namespace
}  // namespace dcvg

void register_elementwise(napi_env env, napi_value exports) {
  using namespace dcvg;
  export_fn(env, exports, "fill", Fill);
  export_fn(env, exports, "stridedCopy", StridedCopy);
  export_fn(env, exports, "stridedAccumulate", StridedAccumulate);
  export_fn(env, exports, "stridedScatter", StridedScatter);
  export_fn(env, exports, "unary", Unary);
  export_fn(env, exports, "unaryBackward", UnaryBackward);
  export_fn(env, exports, "affine", Affine);
  export_fn(env, exports, "powScalar", PowScalar);
  export_fn(env, exports, "binary", Binary);
  export_fn(env, exports, "axpy", Axpy);
  export_fn(env, exports, "reduce", Reduce);
  export_fn(env, exports, "softmax", Softmax);
  export_fn(env, exports, "softmaxBackward", SoftmaxBackward);
  export_fn(env, exports, "norm", Norm);
  export_fn(env, exports, "normBackward", NormBackward);
  export_fn(env, exports, "adamw", AdamWStep);
  export_fn(env, exports, "sumSquares", SumSquares);
}
