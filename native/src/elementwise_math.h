// Scalar float math written so that GCC auto-vectorises loops that call it (-O3 -march=native, no -ffast-math).
//
// glibc's expf/tanhf/erff/logf are accurate but opaque calls, so a loop calling them runs one element at a time; with
// -fmath-errno (the default for this build) GCC will not even vectorise std::sqrt. The functions here use only
// arithmetic, explicit fma, min/max, selects and integer bit tricks, which the vectoriser handles provided the
// including file is compiled with -fno-trapping-math (elementwise.cc sets it with #pragma GCC optimize): otherwise
// GCC sinks arithmetic needed by only one arm of a select into a branch and will not if-convert it back.
//
// Accuracy, measured against double-precision libm on sweeps of float bit patterns: exp_approx within 1.0 ulp over
// the normal range (with overflow to inf, underflow through the subnormals to 0, and NaN propagation), log_approx
// within 0.9 ulp, tanh_approx within 1.3 ulp, erf_approx within 1.6e-7 relative (about 2 ulp). That is far inside
// the 1e-4 relative tolerance the kernels are held to against PyTorch, whose own vectorised paths use Sleef's 1-ulp
// functions.
#pragma once
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>

namespace dcvg {
namespace emath {

// a * b + c, fused where the target has FMA; elsewhere std::fma would be a slow software routine, and the unfused
// form only costs a little accuracy.
inline float fmadd(float a, float b, float c) {
#if defined(__FMA__)
  return std::fma(a, b, c);
#else
  return a * b + c;
#endif
}

inline float bits_to_float(int32_t i) {
  float f;
  std::memcpy(&f, &i, sizeof f);
  return f;
}

// e^x. Range reduction x = n ln2 + r with |r| <= ln2/2 (ln2 split in two so n*ln2_hi is exact), Cephes' degree-6
// polynomial for e^r, then scaling by 2^n done as two multiplications by 2^(n/2) so that both factors stay normal
// numbers for every n the clamp allows; the final multiply rounds once into the subnormal range when needed.
inline float exp_approx(float x) {
  // NaN passes both clamps unchanged (std::max/min return their first argument when the comparison is false).
  x = std::min(std::max(x, -104.0f), 89.0f);
  // Adding 1.5 * 2^23 rounds x*log2(e) to an integer in the low mantissa bits; subtracting it gives that integer.
  const float shifter = 12582912.0f;
  const float t = fmadd(x, 1.44269504088896341f, shifter);
  const float n = t - shifter;
  float r = fmadd(n, -0.693359375f, x);
  r = fmadd(n, 2.12194440e-4f, r);
  float p = 1.9875691500e-4f;
  p = fmadd(p, r, 1.3981999507e-3f);
  p = fmadd(p, r, 8.3334519073e-3f);
  p = fmadd(p, r, 4.1665795894e-2f);
  p = fmadd(p, r, 1.6666665459e-1f);
  p = fmadd(p, r, 5.0000001201e-1f);
  p = fmadd(p, r * r, r) + 1.0f;
  const int32_t ni = static_cast<int32_t>(n);
  const int32_t n1 = ni >> 1;
  const int32_t n2 = ni - n1;
  return p * bits_to_float((n1 + 127) << 23) * bits_to_float((n2 + 127) << 23);
}

inline int32_t float_to_bits(float f) {
  int32_t i;
  std::memcpy(&i, &f, sizeof i);
  return i;
}

// Natural log (Cephes logf): x = m * 2^e with m in [sqrt(1/2), sqrt(2)), log(m) = f - f^2/2 + f^3 P(f) for
// f = m - 1, and e * ln2 added in two parts. Subnormal inputs are scaled up by 2^23 first; the special cases
// (x < 0 or NaN -> NaN, 0 -> -inf, inf -> inf) are selected at the end.
inline float log_approx(float x) {
  constexpr float kInf = std::numeric_limits<float>::infinity();
  const bool tiny = x < 1.17549435e-38f;  // also true for 0 and negatives, whose results are overridden below
  const float xs = tiny ? x * 8388608.0f : x;
  const int32_t bits = float_to_bits(xs);
  float e = static_cast<float>(((bits >> 23) & 0xff) - 127) - (tiny ? 23.0f : 0.0f);
  float m = bits_to_float((bits & 0x007fffff) | 0x3f800000);  // in [1, 2)
  const bool high = m > 1.41421356f;
  m = high ? 0.5f * m : m;
  e = high ? e + 1.0f : e;
  const float f = m - 1.0f;
  const float z = f * f;
  float p = 7.0376836292e-2f;
  p = fmadd(p, f, -1.1514610310e-1f);
  p = fmadd(p, f, 1.1676998740e-1f);
  p = fmadd(p, f, -1.2420140846e-1f);
  p = fmadd(p, f, 1.4249322787e-1f);
  p = fmadd(p, f, -1.6668057665e-1f);
  p = fmadd(p, f, 2.0000714765e-1f);
  p = fmadd(p, f, -2.4999993993e-1f);
  p = fmadd(p, f, 3.3333331174e-1f);
  float y = p * f * z;
  y = fmadd(e, -2.12194440e-4f, y);
  y = fmadd(-0.5f, z, y);
  float r = f + y;
  r = fmadd(e, 0.693359375f, r);
  r = x == kInf ? kInf : r;
  r = x == 0.0f ? -kInf : r;
  return ((x < 0.0f) | (x != x)) ? std::numeric_limits<float>::quiet_NaN() : r;
}

// tanh: odd minimax polynomial (Cephes tanhf) near 0, where 1 - 2/(e^2x + 1) would cancel; that formula elsewhere.
inline float tanh_approx(float x) {
  const float ax = std::fabs(x);
  const float s = x * x;
  float p = -5.70498872745e-3f;
  p = fmadd(p, s, 2.06390887954e-2f);
  p = fmadd(p, s, -5.37397155531e-2f);
  p = fmadd(p, s, 1.33314422036e-1f);
  p = fmadd(p, s, -3.33332819422e-1f);
  const float small = fmadd(p * s, x, x);
  // e^(2|x|) overflows to inf for large |x|, giving exactly 1.
  const float big = std::copysign(1.0f - 2.0f / (exp_approx(ax + ax) + 1.0f), x);
  return ax < 0.625f ? small : big;
}

// 1 / (1 + e^-x), the form PyTorch uses (saturates to exactly 0 and 1).
inline float sigmoid_approx(float x) { return 1.0f / (1.0f + exp_approx(-x)); }

// erf. |x| < 1: x * P(x^2), a degree-6 polynomial fitted for minimal relative error (1.2e-9 in exact arithmetic).
// |x| >= 1: 1 - erfc(|x|) with the Chebyshev-fitted erfc of Numerical Recipes (erfcc, relative error < 1.2e-7), whose
// result is at most 0.16 there, so its error stays below one ulp of erf. Beyond |x| = 10, erfc is 0 in float.
inline float erf_approx(float x) {
  const float ax = std::fabs(x);
  const float s = x * x;
  float p = 7.854380724e-05f;
  p = fmadd(p, s, -8.010363122e-04f);
  p = fmadd(p, s, 5.188348949e-03f);
  p = fmadd(p, s, -2.685382472e-02f);
  p = fmadd(p, s, 1.128358552e-01f);
  p = fmadd(p, s, -3.761262587e-01f);
  p = fmadd(p, s, 1.128379166e+00f);
  const float small = p * x;
  const float z = std::min(ax, 10.0f);  // also maps NaN to NaN (see exp_approx)
  const float t = 1.0f / fmadd(0.5f, z, 1.0f);
  float q = 0.17087277f;
  q = fmadd(q, t, -0.82215223f);
  q = fmadd(q, t, 1.48851587f);
  q = fmadd(q, t, -1.13520398f);
  q = fmadd(q, t, 0.27886807f);
  q = fmadd(q, t, -0.18628806f);
  q = fmadd(q, t, 0.09678418f);
  q = fmadd(q, t, 0.37409196f);
  q = fmadd(q, t, 1.00002368f);
  q = fmadd(q, t, -1.26551223f);
  const float erfc = t * exp_approx(q - z * z);
  const float big = std::copysign(1.0f - erfc, x);
  return ax < 1.0f ? small : big;
}

// sqrt(2/pi) and the cubic coefficient of the tanh approximation of GELU.
constexpr float kGeluBeta = 0.7978845608028654f;
constexpr float kGeluKappa = 0.044715f;

inline float gelu_tanh(float x) {
  const float inner = kGeluBeta * (x + kGeluKappa * x * x * x);
  return 0.5f * x * (1.0f + tanh_approx(inner));
}

// y[i] = sqrt(x[i]) with IEEE semantics (NaN for negative inputs), explicitly vectorised because GCC does not
// vectorise std::sqrt under -fmath-errno. x and y may be the same array.
inline void sqrt_array(const float* x, float* y, size_t n) {
  size_t i = 0;
#if defined(__AVX512F__)
  // (The zero-masking form with a full mask is plain vsqrtps; unlike _mm512_sqrt_ps it does not trip GCC 12's
  // -Wmaybe-uninitialized false positive on _mm512_undefined_ps.)
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, _mm512_maskz_sqrt_ps(0xFFFF, _mm512_loadu_ps(x + i)));
#elif defined(__AVX__)
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_sqrt_ps(_mm256_loadu_ps(x + i)));
#endif
  for (; i < n; i++) y[i] = std::sqrt(x[i]);
}

}  // namespace emath
}  // namespace dcvg
