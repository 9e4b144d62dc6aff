// Dtype conversion kernels: bf16 / f16 (raw 16-bit patterns in a Uint16Array) widened to float32, and float32
// narrowed to bf16 with round-to-nearest-even (NaN stays a quiet NaN). Semantics follow src/backend/backend.ts
// (widen, narrowBf16); the reference versions are in src/backend/convert.ts. Every argument is validated (array kinds
// and lengths) before any memory is touched.
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

}  // namespace
}  // namespace dcvg

void register_convert(napi_env env, napi_value exports) {
  dcvg::export_fn(env, exports, "widen", dcvg::Widen);
  dcvg::export_fn(env, exports, "narrowBf16", dcvg::NarrowBf16);
}
