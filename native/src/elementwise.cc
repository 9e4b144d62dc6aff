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

// max that returns NaN when either side is NaN (torch.amax semantics).
inline float nanmax(float a, float b) { return (a > b || a != a) ? a : b; }

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
const char* const kUnaryNames[] = {"neg",  "exp",     "log",  "sqrt", "rsqrt",     "abs",      "sign",
                                   "sin",  "cos",     "tanh", "sigmoid", "relu",   "silu",     "gelu_tanh",
                                   "gelu_erf", "square", "recip"};

// 1 / sqrt(2 pi), for the normal density in the erf-GELU derivative.
constexpr float kInvSqrt2Pi = 0.3989422804014327f;
constexpr float kSqrtHalf = 0.7071067811865476f;

// out[i] = f(x[i]). min_parallel is lower for ops that call libm per element (far more work per element).
template <class F>
void map1(const float* x, float* out, size_t n, F f, size_t min_parallel = kParallelMin) {
  parallel_range(
      n,
      [&](size_t b, size_t e) {
        for (size_t i = b; i < e; i++) out[i] = f(x[i]);
      },
      min_parallel);
}

// Ops that are libm calls per element (not vectorised) get threads from this size on.
constexpr size_t kParallelMinLibm = 4096;

void unary_forward(UnaryOp op, const float* x, float* out, size_t n) {
  switch (op) {
    case kNeg: return map1(x, out, n, [](float v) { return -v; });
    case kExp: return map1(x, out, n, [](float v) { return exp_approx(v); });
    case kLog: return map1(x, out, n, [](float v) { return std::log(v); }, kParallelMinLibm);
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
    // PyTorch's formula, kept verbatim so the (inherent) cancellation for very negative x matches it.
    case kGeluErf:
      return map1(x, out, n, [](float v) { return 0.5f * v * (1.0f + std::erf(v * kSqrtHalf)); }, kParallelMinLibm);
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
      return map3(
          x, y, gy, gx, n,
          [](float v, float, float g) {
            const float cdf = 0.5f * (1.0f + std::erf(v * kSqrtHalf));
            const float pdf = kInvSqrt2Pi * exp_approx(-0.5f * v * v);
            return g * (cdf + v * pdf);
          },
          kParallelMinLibm);
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
// torch.maximum / torch.minimum: NaN in either input gives NaN.
struct OpMax { static float f(float a, float b) { return (a > b || a != a) ? a : b; } };
struct OpMin { static float f(float a, float b) { return (a < b || a != a) ? a : b; } };
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

// Sums are accumulated in double: exact enough for any r the tests use, and free here because the loops are
// memory-bound (the float -> double widening vectorises).
double sum_contiguous(const float* x, size_t n) {
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

// out[i] = op_j x[j * inner + i] for i in [0, len), j in [0, r): one (outer, inner-tile) block.
void reduce_block(bool is_max, const float* x, size_t r, size_t inner, size_t len, float* out) {
  if (is_max) {
    float acc[kReduceTile];
    std::memcpy(acc, x, len * sizeof(float));
    for (size_t j = 1; j < r; j++) {
      const float* row = x + j * inner;
      for (size_t i = 0; i < len; i++) acc[i] = (row[i] > acc[i] || row[i] != row[i]) ? row[i] : acc[i];
    }
    std::memcpy(out, acc, len * sizeof(float));
  } else {
    double acc[kReduceTile];
    std::fill(acc, acc + len, 0.0);
    for (size_t j = 0; j < r; j++) {
      const float* row = x + j * inner;
      for (size_t i = 0; i < len; i++) acc[i] += row[i];
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

