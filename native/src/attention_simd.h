// Minimal SIMD layer for the attention kernels: one float vector type `vf` of W lanes plus the handful of
// operations the tile GEMM and the softmax passes need. The widest instruction set the compiler targets is used
// (the addon is built with -march=native): AVX-512, else AVX2+FMA, else plain scalar code with W == 1.
#pragma once
#include <cmath>
#include <cstddef>

#if defined(__AVX512F__) || (defined(__AVX2__) && defined(__FMA__))
#include <immintrin.h>
#endif

namespace dcvg {
namespace attn {

// 2^f on [-0.5, 0.5]: Taylor series of e^(f ln2) to degree 6; truncation error < 1.3e-7 relative, i.e. at the
// level of float rounding, which is all softmax needs.
constexpr float kExp2C1 = 0.69314718055994531f;
constexpr float kExp2C2 = 0.24022650695910071f;
constexpr float kExp2C3 = 0.05550410866482158f;
constexpr float kExp2C4 = 0.00961812910762848f;
constexpr float kExp2C5 = 0.00133335581464284f;
constexpr float kExp2C6 = 0.00015403530393382f;

#if defined(__AVX512F__)

constexpr int W = 16;
using vf = __m512;

inline __mmask16 lanes(int n) { return static_cast<__mmask16>((1u << n) - 1u); }
inline vf vzero() { return _mm512_setzero_ps(); }
inline vf vset1(float x) { return _mm512_set1_ps(x); }
inline vf vload(const float* p) { return _mm512_loadu_ps(p); }
// First n (1..W) lanes from p, the rest set to `fill`; never reads past p[n-1].
inline vf vloadn(const float* p, int n, float fill) {
  return _mm512_mask_loadu_ps(_mm512_set1_ps(fill), lanes(n), p);
}
inline void vstore(float* p, vf v) { _mm512_storeu_ps(p, v); }
inline void vstoren(float* p, vf v, int n) { _mm512_mask_storeu_ps(p, lanes(n), v); }
inline vf vfma(vf a, vf b, vf c) { return _mm512_fmadd_ps(a, b, c); }
inline vf vadd(vf a, vf b) { return _mm512_add_ps(a, b); }
inline vf vsub(vf a, vf b) { return _mm512_sub_ps(a, b); }
inline vf vmul(vf a, vf b) { return _mm512_mul_ps(a, b); }
// GCC 12's unmasked forms of several AVX-512 intrinsics pass an "undefined" vector internally and trigger bogus
// -Wmaybe-uninitialized warnings; the zero-masking forms with an all-ones mask compile to the same instructions.
constexpr __mmask16 kAll = 0xFFFF;
inline vf vmax(vf a, vf b) { return _mm512_maskz_max_ps(kAll, a, b); }
// Horizontal reductions run once per row, so a trip through memory is cheap and avoids those intrinsics.
inline float vhsum(vf v) {
  alignas(64) float t[16];
  _mm512_store_ps(t, v);
  __m256 h = _mm256_add_ps(_mm256_load_ps(t), _mm256_load_ps(t + 8));
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
inline float vhmax(vf v) {
  alignas(64) float t[16];
  _mm512_store_ps(t, v);
  __m256 h = _mm256_max_ps(_mm256_load_ps(t), _mm256_load_ps(t + 8));
  __m128 s = _mm_max_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
  s = _mm_max_ps(s, _mm_movehl_ps(s, s));
  s = _mm_max_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

inline vf vexp2(vf x) {
  // Clamp so that the exponent stays in scalef's useful range (2^-200 flushes to 0). MINPS/MAXPS return their
  // second operand when one is NaN, so with x second a NaN input stays NaN.
  x = _mm512_maskz_min_ps(kAll, _mm512_set1_ps(128.f), _mm512_maskz_max_ps(kAll, _mm512_set1_ps(-200.f), x));
  const vf n = _mm512_maskz_roundscale_ps(kAll, x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const vf f = _mm512_sub_ps(x, n);
  vf p = _mm512_fmadd_ps(_mm512_set1_ps(kExp2C6), f, _mm512_set1_ps(kExp2C5));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(kExp2C4));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(kExp2C3));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(kExp2C2));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(kExp2C1));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.f));
  return _mm512_maskz_scalef_ps(kAll, p, n);
}


// dst[r*ldd + c] = src[c*lds + r] for a W x W tile: the in-register transpose used to pack K^T and V^T.
inline void transpose_tile(const float* src, std::ptrdiff_t lds, float* dst, std::ptrdiff_t ldd) {
  vf r[16], t[16];
  for (int i = 0; i < 16; i++) r[i] = _mm512_loadu_ps(src + i * lds);
  for (int i = 0; i < 16; i += 2) {  // interleave pairs of rows: 2x2 blocks
    t[i] = _mm512_maskz_unpacklo_ps(kAll, r[i], r[i + 1]);
    t[i + 1] = _mm512_maskz_unpackhi_ps(kAll, r[i], r[i + 1]);
  }
  for (int i = 0; i < 16; i += 4) {  // 4x4 blocks within each 128-bit lane
    r[i] = _mm512_maskz_shuffle_ps(kAll, t[i], t[i + 2], 0x44);
    r[i + 1] = _mm512_maskz_shuffle_ps(kAll, t[i], t[i + 2], 0xEE);
    r[i + 2] = _mm512_maskz_shuffle_ps(kAll, t[i + 1], t[i + 3], 0x44);
    r[i + 3] = _mm512_maskz_shuffle_ps(kAll, t[i + 1], t[i + 3], 0xEE);
  }
  for (int i = 0; i < 4; i++) {  // then whole 128-bit lanes, in two rounds
    t[i] = _mm512_maskz_shuffle_f32x4(kAll, r[i], r[i + 4], 0x88);
    t[i + 4] = _mm512_maskz_shuffle_f32x4(kAll, r[i], r[i + 4], 0xDD);
    t[i + 8] = _mm512_maskz_shuffle_f32x4(kAll, r[i + 8], r[i + 12], 0x88);
    t[i + 12] = _mm512_maskz_shuffle_f32x4(kAll, r[i + 8], r[i + 12], 0xDD);
  }
  for (int i = 0; i < 8; i++) {
    _mm512_storeu_ps(dst + i * ldd, _mm512_maskz_shuffle_f32x4(kAll, t[i], t[i + 8], 0x88));
    _mm512_storeu_ps(dst + (i + 8) * ldd, _mm512_maskz_shuffle_f32x4(kAll, t[i], t[i + 8], 0xDD));
  }
}

#elif defined(__AVX2__) && defined(__FMA__)

constexpr int W = 8;
using vf = __m256;

inline __m256i lanes(int n) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
inline vf vzero() { return _mm256_setzero_ps(); }
inline vf vset1(float x) { return _mm256_set1_ps(x); }
inline vf vload(const float* p) { return _mm256_loadu_ps(p); }
inline vf vloadn(const float* p, int n, float fill) {
  const __m256i m = lanes(n);
  return _mm256_blendv_ps(_mm256_set1_ps(fill), _mm256_maskload_ps(p, m), _mm256_castsi256_ps(m));
}
inline void vstore(float* p, vf v) { _mm256_storeu_ps(p, v); }
inline void vstoren(float* p, vf v, int n) { _mm256_maskstore_ps(p, lanes(n), v); }
inline vf vfma(vf a, vf b, vf c) { return _mm256_fmadd_ps(a, b, c); }
inline vf vadd(vf a, vf b) { return _mm256_add_ps(a, b); }
inline vf vsub(vf a, vf b) { return _mm256_sub_ps(a, b); }
inline vf vmul(vf a, vf b) { return _mm256_mul_ps(a, b); }
inline vf vmax(vf a, vf b) { return _mm256_max_ps(a, b); }
inline float vhsum(vf v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
inline float vhmax(vf v) {
  __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_max_ps(s, _mm_movehl_ps(s, s));
  s = _mm_max_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
inline vf vexp2(vf x) {
  // Without scalef the exponent is built by hand, which needs n in [-126, 127]; 2^-126 is as good as 0 here.
  x = _mm256_min_ps(_mm256_set1_ps(127.f), _mm256_max_ps(_mm256_set1_ps(-126.f), x));
  const vf n = _mm256_round_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const vf f = _mm256_sub_ps(x, n);
  vf p = _mm256_fmadd_ps(_mm256_set1_ps(kExp2C6), f, _mm256_set1_ps(kExp2C5));
  p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(kExp2C4));
  p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(kExp2C3));
  p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(kExp2C2));
  p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(kExp2C1));
  p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(1.f));
  const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}


inline void transpose_tile(const float* src, std::ptrdiff_t lds, float* dst, std::ptrdiff_t ldd) {
  vf r[8], t[8];
  for (int i = 0; i < 8; i++) r[i] = _mm256_loadu_ps(src + i * lds);
  for (int i = 0; i < 8; i += 2) {
    t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
  }
  for (int i = 0; i < 8; i += 4) {
    r[i] = _mm256_shuffle_ps(t[i], t[i + 2], 0x44);
    r[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], 0xEE);
    r[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0x44);
    r[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
  }
  for (int i = 0; i < 4; i++) {
    _mm256_storeu_ps(dst + i * ldd, _mm256_permute2f128_ps(r[i], r[i + 4], 0x20));
    _mm256_storeu_ps(dst + (i + 4) * ldd, _mm256_permute2f128_ps(r[i], r[i + 4], 0x31));
  }
}

#else

constexpr int W = 1;
using vf = float;

inline vf vzero() { return 0.f; }
inline vf vset1(float x) { return x; }
inline vf vload(const float* p) { return *p; }
inline vf vloadn(const float* p, int, float) { return *p; }
inline void vstore(float* p, vf v) { *p = v; }
inline void vstoren(float* p, vf v, int) { *p = v; }
inline vf vfma(vf a, vf b, vf c) { return a * b + c; }
inline vf vadd(vf a, vf b) { return a + b; }
inline vf vsub(vf a, vf b) { return a - b; }
inline vf vmul(vf a, vf b) { return a * b; }
inline vf vmax(vf a, vf b) { return b > a ? b : a; }
inline float vhsum(vf v) { return v; }
inline float vhmax(vf v) { return v; }
inline vf vexp2(vf x) { return std::exp2(x); }
inline void transpose_tile(const float* src, std::ptrdiff_t, float* dst, std::ptrdiff_t) { *dst = *src; }

#endif

}  // namespace attn
}  // namespace dcvg
