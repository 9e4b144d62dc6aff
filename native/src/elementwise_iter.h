// Threading and strided-iteration helpers for elementwise.cc.
#pragma once
#include <omp.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "napi_util.h"

namespace dcvg {

// Below this many elements a parallel region costs more than it saves (waking the team takes microseconds, a
// vectorised pass over 32k floats about as long).
constexpr size_t kParallelMin = 32768;

// Calls f(begin, end) on disjoint chunks covering [0, n): one chunk per thread when n >= min_parallel, else one call
// on this thread. Chunk boundaries fall on multiples of 64 elements so threads do not share cache lines of dense
// outputs.
template <class F>
void parallel_range(size_t n, F&& f, size_t min_parallel = kParallelMin) {
  if (n == 0) return;
  const int nt = omp_get_max_threads();
  if (n < min_parallel || nt <= 1) {
    f(size_t(0), n);
    return;
  }
#pragma omp parallel num_threads(nt)
  {
    const size_t k = static_cast<size_t>(omp_get_num_threads());
    const size_t t = static_cast<size_t>(omp_get_thread_num());
    size_t chunk = (n + k - 1) / k;
    chunk = (chunk + 63) & ~size_t(63);
    const size_t b = std::min(n, t * chunk);
    const size_t e = std::min(n, b + chunk);
    if (b < e) f(b, e);
  }
}

// Calls f(i) for i in [0, count), statically split over threads when `work` (elements touched in all) is large.
template <class F>
void parallel_for(size_t count, size_t work, F&& f) {
  if (count == 0) return;
  if (work < kParallelMin || count == 1 || omp_get_max_threads() <= 1) {
    for (size_t i = 0; i < count; i++) f(i);
    return;
  }
#pragma omp parallel for schedule(static)
  for (size_t i = 0; i < count; i++) f(i);
}

// i64_array caps arrays at 64 entries, so shapes never have more dims than this.
constexpr int kMaxDims = 64;

// An iteration space over a dense row-major output: dims outermost first, with the strides of up to two strided
// operands (the dense operand's strides follow from the shape). Built by coalesce(), which guarantees nd >= 1.
struct Layout {
  int nd = 0;
  int64_t shape[kMaxDims];
  int64_t st[2][kMaxDims];
};

// Simplifies a shape and the strides of k strided operands without changing the element order: drops size-1 dims
// and merges a dim into the next inner one when every operand steps over both as over one dim
// (stride_outer == stride_inner * size_inner). A dense same-shape view collapses to one dim of stride 1, an
// all-zero-stride (scalar) view to stride 0, and e.g. an NCTHW -> NTHWC permute to a 2-D transpose. Callers handle
// empty shapes before this.
inline Layout coalesce(const std::vector<int64_t>& shape, const std::vector<int64_t>* const* strides, int k) {
  Layout L;
  for (size_t d = 0; d < shape.size(); d++) {
    if (shape[d] == 1) continue;
    bool merge = L.nd > 0;
    for (int j = 0; j < k && merge; j++) merge = L.st[j][L.nd - 1] == (*strides[j])[d] * shape[d];
    if (merge) {
      L.shape[L.nd - 1] *= shape[d];
      for (int j = 0; j < k; j++) L.st[j][L.nd - 1] = (*strides[j])[d];
    } else {
      L.shape[L.nd] = shape[d];
      for (int j = 0; j < k; j++) L.st[j][L.nd] = (*strides[j])[d];
      L.nd++;
    }
  }
  if (L.nd == 0) {  // every dim had size 1: a single element
    L.nd = 1;
    L.shape[0] = 1;
    for (int j = 0; j < k; j++) L.st[j][0] = 0;
  }
  return L;
}

// Visits the dense positions [b, e) of L row by row, calling row(pos, off, count): `count` consecutive positions of
// the innermost dim starting at dense position `pos`, whose first element sits at offset off[j] in operand j (the
// row continues with stride L.st[j][nd-1]). base[j] is operand j's view offset. Lets each thread start anywhere.
template <int K, class Row>
void walk_rows(const Layout& L, const int64_t* base, size_t b, size_t e, Row&& row) {
  const int nd = L.nd;
  const size_t inner = static_cast<size_t>(L.shape[nd - 1]);
  int64_t idx[kMaxDims];
  int64_t off[K];
  size_t q = b / inner;
  size_t col = b % inner;
  for (int j = 0; j < K; j++) off[j] = base[j] + static_cast<int64_t>(col) * L.st[j][nd - 1];
  for (int d = nd - 2; d >= 0; d--) {
    const size_t s = static_cast<size_t>(L.shape[d]);
    idx[d] = static_cast<int64_t>(q % s);
    q /= s;
    for (int j = 0; j < K; j++) off[j] += idx[d] * L.st[j][d];
  }
  size_t pos = b;
  while (pos < e) {
    const size_t cnt = std::min(inner - col, e - pos);
    row(pos, static_cast<const int64_t*>(off), cnt);
    pos += cnt;
    if (pos >= e) break;
    // Back to the start of this row, then odometer-increment the outer dims.
    for (int j = 0; j < K; j++) off[j] -= static_cast<int64_t>(col) * L.st[j][nd - 1];
    col = 0;
    for (int d = nd - 2; d >= 0; d--) {
      idx[d]++;
      for (int j = 0; j < K; j++) off[j] += L.st[j][d];
      if (idx[d] < L.shape[d]) break;
      for (int j = 0; j < K; j++) off[j] -= L.st[j][d] * L.shape[d];
      idx[d] = 0;
    }
  }
}

// Throws a RangeError unless the strided view (offset, strides) of `shape` lies inside `data`, i.e.
// offset + sum((shape_i - 1) * stride_i) < data.length. A view of zero elements touches nothing and always passes.
// Computed in 128 bits: each term can approach 2^106.
inline void check_view(const F32& data, int64_t offset, const std::vector<int64_t>& strides,
                       const std::vector<int64_t>& shape, size_t count, const char* name, const char* fname) {
  if (count == 0) return;
  __int128 last = offset;
  for (size_t d = 0; d < shape.size(); d++) last += static_cast<__int128>(shape[d] - 1) * strides[d];
  if (last >= static_cast<__int128>(data.length))
    range_error(std::string(fname) + ": strided view '" + name + "' reaches element " +
                (last > static_cast<__int128>(INT64_MAX) ? std::string("(overflow)")
                                                         : std::to_string(static_cast<int64_t>(last))) +
                " but the array has " + std::to_string(data.length) + " elements");
}

}  // namespace dcvg
