// Dtype conversion kernels: bf16 / f16 (raw 16-bit patterns in a Uint16Array) widened to float32, and float32
// narrowed to bf16 with round-to-nearest-even (NaN stays a quiet NaN). Semantics follow src/backend/backend.ts
// (widen, narrowBf16); the reference versions are in src/backend/convert.ts. Every argument is validated (array kinds
// and lengths) before any memory is touched.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>

#include "napi_util.h"

namespace dcvg {
namespace {

struct U16 {
  uint16_t* data = nullptr;
  size_t length = 0;
};

// A Uint16Array argument (not null).
U16 u16_arg(napi_env env, napi_value v, const char* fname, const char* name) {
  bool is_ta = false;
  napi_is_typedarray(env, v, &is_ta);
  if (!is_ta) type_error(std::string(fname) + ": argument '" + name + "' must be a Uint16Array");
  napi_typedarray_type tt;
  size_t len;
  void* data;
  napi_value ab;
  size_t off;
  napi_get_typedarray_info(env, v, &tt, &len, &data, &ab, &off);
  if (tt != napi_uint16_array) type_error(std::string(fname) + ": argument '" + name + "' must be a Uint16Array (wrong element type)");
  U16 r;
  r.data = static_cast<uint16_t*>(data);
  r.length = len;
  return r;
}

inline float bf16_to_f32(uint16_t h) {
  uint32_t u = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

inline uint16_t f32_to_bf16(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  if ((x & 0x7f800000u) == 0x7f800000u && (x & 0x7fffffu)) return static_cast<uint16_t>((x >> 16) | 0x40u);
  return static_cast<uint16_t>((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
}

// IEEE half -> float32, exact (every half is a float32).
inline float f16_to_f32(uint16_t h) {
  uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  uint32_t e = (h >> 10) & 0x1fu;
  uint32_t m = h & 0x3ffu;
  uint32_t u;
  if (e == 0) {
    if (m == 0) {
      u = sign;
    } else {  // subnormal: normalise
      int shift = 0;
      while (!(m & 0x400u)) {
        m <<= 1;
        shift++;
      }
      m &= 0x3ffu;
      u = sign | (static_cast<uint32_t>(127 - 15 - shift + 1) << 23) | (m << 13);
    }
  } else if (e == 31) {
    u = sign | 0x7f800000u | (m << 13) | (m ? 0x400000u : 0u);
  } else {
    u = sign | ((e + 112u) << 23) | (m << 13);
  }
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

constexpr size_t kParallelMin = 1 << 16;

// widen(kind: 'bf16' | 'f16', src: Uint16Array, out: Float32Array): out[i] = src[i] as float32 for i < src.length.
napi_value Widen(napi_env env, napi_callback_info info) {
  return guarded(env, [&]() -> napi_value {
    Args a(env, info, 3, "widen");
    std::string kind = a.str(0, "kind");
    if (kind != "bf16" && kind != "f16") type_error("widen: argument 'kind' must be \"bf16\" or \"f16\", got \"" + kind + "\"");
    size_t argc = 3;
    napi_value argv[3];
    napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr);
    U16 src = u16_arg(env, argv[1], "widen", "src");
    F32 out = a.f32(2, "out");
    if (out.length != src.length)
      range_error("widen: 'out' has " + std::to_string(out.length) + " elements, 'src' has " + std::to_string(src.length));
    const uint16_t* s = src.data;
    float* o = out.data;
    const long n = static_cast<long>(src.length);
    if (kind == "bf16") {
#pragma omp parallel for schedule(static) if (src.length >= kParallelMin)
      for (long i = 0; i < n; i++) o[i] = bf16_to_f32(s[i]);
    } else {
#pragma omp parallel for schedule(static) if (src.length >= kParallelMin)
      for (long i = 0; i < n; i++) o[i] = f16_to_f32(s[i]);
    }
    return nullptr;
  });
}

// narrowBf16(src: Float32Array, out: Uint16Array): out[i] = bf16(src[i]), round to nearest even.
napi_value NarrowBf16(napi_env env, napi_callback_info info) {
  return guarded(env, [&]() -> napi_value {
    Args a(env, info, 2, "narrowBf16");
    F32 src = a.f32(0, "src");
    size_t argc = 2;
    napi_value argv[2];
    napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr);
    U16 out = u16_arg(env, argv[1], "narrowBf16", "out");
    if (out.length != src.length)
      range_error("narrowBf16: 'out' has " + std::to_string(out.length) + " elements, 'src' has " + std::to_string(src.length));
    const float* s = src.data;
    uint16_t* o = out.data;
    const long n = static_cast<long>(src.length);
#pragma omp parallel for schedule(static) if (src.length >= kParallelMin)
    for (long i = 0; i < n; i++) o[i] = f32_to_bf16(s[i]);
    return nullptr;
  });
}


// linearBf16(x: Float32Array [rows, I], w: Uint16Array [O, I] (bf16 bits), rows, O, I, out: Float32Array [rows, O],
// accumulate: bool): out[r, o] (+)= sum_i x[r, i] * w[o, i], the bf16 weights widened in registers (exact), products
// and sums in float32. For few rows (a prompt's tokens) this reads each weight once at 2 bytes per element, instead
// of widening the whole matrix to float32 and running a GEMM over it. Weight rows are split over the OpenMP threads;
// each output element is one thread's serial sum (16 lanes, then the lanes added in a fixed order), so the thread
// count never changes a result.
typedef float v16f __attribute__((vector_size(64)));
typedef uint32_t v16u __attribute__((vector_size(64)));
typedef uint16_t v16h __attribute__((vector_size(32)));

inline v16f widen16(const uint16_t* p) {
  v16h h;
  std::memcpy(&h, p, sizeof h);
  v16u u = __builtin_convertvector(h, v16u) << 16;
  v16f f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

inline float hsum(v16f v) {
  float s = 0.f;
  for (int i = 0; i < 16; i++) s += v[i];
  return s;
}

constexpr int64_t kRowBlock = 4;  // input rows sharing one pass over a weight row

napi_value LinearBf16(napi_env env, napi_callback_info info) {
  return guarded(env, [&]() -> napi_value {
    Args a(env, info, 7, "linearBf16");
    F32 x = a.f32(0, "x");
    size_t argc = 7;
    napi_value argv[7];
    napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr);
    U16 w = u16_arg(env, argv[1], "linearBf16", "w");
    const int64_t rows = a.i64(2, "rows"), O = a.i64(3, "O"), I = a.i64(4, "I");
    F32 out = a.f32(5, "out");
    const bool acc = a.boolean(6, "accumulate");
    constexpr int64_t kMax = int64_t(1) << 40;
    if (rows > kMax || O > kMax || I > kMax || (I && (rows > kMax / I || O > kMax / I)) || (O && rows > kMax / O))
      range_error("linearBf16: sizes too large");
    need_len(x, static_cast<size_t>(rows * I), "x", "linearBf16");
    if (w.length < static_cast<size_t>(O * I))
      range_error("linearBf16: 'w' has " + std::to_string(w.length) + " elements, needs " + std::to_string(O * I));
    need_len(out, static_cast<size_t>(rows * O), "out", "linearBf16");
    const float* X = x.data;
    const uint16_t* W = w.data;
    float* Y = out.data;
    const int64_t I16 = I / 16 * 16;
#pragma omp parallel for schedule(static) if (O * I * std::max<int64_t>(rows, 1) >= (int64_t(1) << 16))
    for (int64_t o = 0; o < O; o++) {
      const uint16_t* wr = W + o * I;
      for (int64_t r0 = 0; r0 < rows; r0 += kRowBlock) {
        const int64_t nr = std::min(kRowBlock, rows - r0);
        v16f s[kRowBlock] = {};
        for (int64_t i = 0; i < I16; i += 16) {
          const v16f wv = widen16(wr + i);
          for (int64_t r = 0; r < nr; r++) {
            v16f xv;
            std::memcpy(&xv, X + (r0 + r) * I + i, sizeof xv);
            s[r] += xv * wv;
          }
        }
        for (int64_t r = 0; r < nr; r++) {
          float t = hsum(s[r]);
          const float* xr = X + (r0 + r) * I;
          for (int64_t i = I16; i < I; i++) t += xr[i] * bf16_to_f32(wr[i]);
          float& y = Y[(r0 + r) * O + o];
          y = acc ? y + t : t;
        }
      }
    }
    return nullptr;
  });
}

}  // namespace
}  // namespace dcvg

void register_convert(napi_env env, napi_value exports) {
  dcvg::export_fn(env, exports, "widen", dcvg::Widen);
  dcvg::export_fn(env, exports, "narrowBf16", dcvg::NarrowBf16);
  dcvg::export_fn(env, exports, "linearBf16", dcvg::LinearBf16);
}
