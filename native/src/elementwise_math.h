// Scalar float math written so that GCC auto-vectorises loops that call it (-O3 -march=native, no -ffast-math).
//
// glibc's expf/tanhf are exact to ~1 ulp but are opaque calls, so a loop calling them runs one element at a time;
// with -fmath-errno (the default for this build) GCC will not even vectorise std::sqrt. The functions here use only
// arithmetic, explicit fma, min/max, selects and integer bit tricks, which the vectoriser handles. Accuracy (measured against
// double-precision libm on a sweep of float bit patterns): exp_approx within 1.0 ulp over the normal range (with
// overflow to inf, underflow through the subnormals to 0 and NaN propagation), tanh_approx within 1.3 ulp. That is far inside the 1e-4 relative
// tolerance the kernels are held to against PyTorch (whose own vectorised paths use Sleef at 1.0 ulp).
#pragma once
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>

namespace dcvg {
namespace emath {

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
  const float t = std::fma(x, 1.44269504088896341f, shifter);
  const float n = t - shifter;
  float r = std::fma(n, -0.693359375f, x);
  r = std::fma(n, 2.12194440e-4f, r);
  float p = 1.9875691500e-4f;
  p = std::fma(p, r, 1.3981999507e-3f);
  p = std::fma(p, r, 8.3334519073e-3f);
  p = std::fma(p, r, 4.1665795894e-2f);
  p = std::fma(p, r, 1.6666665459e-1f);
  p = std::fma(p, r, 5.0000001201e-1f);
  p = std::fma(p, r * r, r) + 1.0f;
  const int32_t ni = static_cast<int32_t>(n);
  const int32_t n1 = ni >> 1;
  const int32_t n2 = ni - n1;
  return p * bits_to_float((n1 + 127) << 23) * bits_to_float((n2 + 127) << 23);
}

// tanh: odd minimax polynomial (Cephes tanhf) near 0, where 1 - 2/(e^2x + 1) would cancel; that formula elsewhere.
inline float tanh_approx(float x) {
  const float ax = std::fabs(x);
  const float s = x * x;
  float p = -5.70498872745e-3f;
  p = std::fma(p, s, 2.06390887954e-2f);
  p = std::fma(p, s, -5.37397155531e-2f);
  p = std::fma(p, s, 1.33314422036e-1f);
  p = std::fma(p, s, -3.33332819422e-1f);
  const float small = std::fma(p * s, x, x);
  // e^(2|x|) overflows to inf for large |x|, giving exactly 1.
  const float big = std::copysign(1.0f - 2.0f / (exp_approx(ax + ax) + 1.0f), x);
  return ax < 0.625f ? small : big;
}

// 1 / (1 + e^-x), the form PyTorch uses (saturates to exactly 0 and 1).
inline float sigmoid_approx(float x) { return 1.0f / (1.0f + exp_approx(-x)); }

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
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, _mm512_sqrt_ps(_mm512_loadu_ps(x + i)));
#elif defined(__AVX__)
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_sqrt_ps(_mm256_loadu_ps(x + i)));
#endif
  for (; i < n; i++) y[i] = std::sqrt(x[i]);
}

}  // namespace emath
}  // namespace dcvg
