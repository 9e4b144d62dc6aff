// dcvg_native: entry point and argument helpers. Kernels live in blas_conv.cc, elementwise.cc and attention.cc.
#include <malloc.h>
#include <sys/mman.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <string>

#include "napi_util.h"

namespace dcvg {

Args::Args(napi_env env, napi_callback_info info, size_t expected, const char* fname) : env_(env), fname_(fname) {
  size_t argc = expected;
  argv_.resize(expected);
  napi_status st = napi_get_cb_info(env, info, &argc, argv_.data(), nullptr, nullptr);
  if (st != napi_ok) type_error(std::string(fname) + ": cannot read arguments");
  if (argc != expected)
    type_error(std::string(fname) + ": expected " + std::to_string(expected) + " arguments, got " +
               std::to_string(argc));
}

static std::string where(const char* fname, const char* name) { return std::string(fname) + ": argument '" + name + "'"; }

F32 Args::f32(size_t i, const char* name) const {
  F32 r = f32_or_null(i, name);
  if (r.null) type_error(where(fname_, name) + " must be a Float32Array, got null");
  return r;
}

F32 Args::f32_or_null(size_t i, const char* name) const {
  F32 r;
  napi_valuetype t;
  napi_typeof(env_, argv_[i], &t);
  if (t == napi_null || t == napi_undefined) {
    r.null = true;
    return r;
  }
  bool is_ta = false;
  napi_is_typedarray(env_, argv_[i], &is_ta);
  if (!is_ta) type_error(where(fname_, name) + " must be a Float32Array");
  napi_typedarray_type tt;
  size_t len;
  void* data;
  napi_value ab;
  size_t off;
  napi_get_typedarray_info(env_, argv_[i], &tt, &len, &data, &ab, &off);
  if (tt != napi_float32_array) type_error(where(fname_, name) + " must be a Float32Array (wrong element type)");
  r.data = static_cast<float*>(data);
  r.length = len;
  return r;
}

int64_t Args::i64(size_t i, const char* name, int64_t min) const {
  double v = f64(i, name);
  if (v != std::floor(v) || std::fabs(v) > 9007199254740991.0) type_error(where(fname_, name) + " must be an integer");
  int64_t r = static_cast<int64_t>(v);
  if (r < min) range_error(where(fname_, name) + " must be >= " + std::to_string(min) + ", got " + std::to_string(r));
  return r;
}

double Args::f64(size_t i, const char* name) const {
  napi_valuetype t;
  napi_typeof(env_, argv_[i], &t);
  if (t != napi_number) type_error(where(fname_, name) + " must be a number");
  double v;
  napi_get_value_double(env_, argv_[i], &v);
  if (!std::isfinite(v)) range_error(where(fname_, name) + " must be finite");
  return v;
}

bool Args::boolean(size_t i, const char* name) const {
  napi_valuetype t;
  napi_typeof(env_, argv_[i], &t);
  if (t != napi_boolean) type_error(where(fname_, name) + " must be a boolean");
  bool v;
  napi_get_value_bool(env_, argv_[i], &v);
  return v;
}

std::vector<int64_t> Args::i64_array(size_t i, const char* name, long expect_len, int64_t min) const {
  bool is_arr = false;
  napi_is_array(env_, argv_[i], &is_arr);
  if (!is_arr) type_error(where(fname_, name) + " must be an array of integers");
  uint32_t n;
  napi_get_array_length(env_, argv_[i], &n);
  if (expect_len >= 0 && static_cast<long>(n) != expect_len)
    range_error(where(fname_, name) + " must have " + std::to_string(expect_len) + " entries, got " + std::to_string(n));
  if (n > 64) range_error(where(fname_, name) + " has too many entries (" + std::to_string(n) + ")");
  std::vector<int64_t> out(n);
  for (uint32_t j = 0; j < n; j++) {
    napi_value e;
    napi_get_element(env_, argv_[i], j, &e);
    napi_valuetype t;
    napi_typeof(env_, e, &t);
    if (t != napi_number) type_error(where(fname_, name) + " must contain only numbers");
    double v;
    napi_get_value_double(env_, e, &v);
    if (!std::isfinite(v) || v != std::floor(v) || std::fabs(v) > 9007199254740991.0)
      type_error(where(fname_, name) + " must contain only integers");
    if (v < static_cast<double>(min))
      range_error(where(fname_, name) + "[" + std::to_string(j) + "] must be >= " + std::to_string(min));
    out[j] = static_cast<int64_t>(v);
  }
  return out;
}

std::string Args::str(size_t i, const char* name) const {
  napi_valuetype t;
  napi_typeof(env_, argv_[i], &t);
  if (t != napi_string) type_error(where(fname_, name) + " must be a string");
  size_t len;
  napi_get_value_string_utf8(env_, argv_[i], nullptr, 0, &len);
  std::string s(len, '\0');
  napi_get_value_string_utf8(env_, argv_[i], s.data(), len + 1, &len);
  return s;
}

void need_len(const F32& arr, size_t need, const char* name, const char* fname) {
  if (arr.length < need)
    range_error(std::string(fname) + ": argument '" + name + "' has " + std::to_string(arr.length) +
                " elements, needs at least " + std::to_string(need));
}

size_t numel(const std::vector<int64_t>& dims, const char* name) {
  size_t n = 1;
  for (int64_t d : dims) {
    if (d < 0) range_error(std::string("negative dimension in ") + name);
    if (d != 0 && n > std::numeric_limits<size_t>::max() / static_cast<size_t>(d))
      range_error(std::string("size overflow in ") + name);
    n *= static_cast<size_t>(d);
  }
  return n;
}

void export_fn(napi_env env, napi_value exports, const char* name, Impl fn) {
  napi_value f;
  napi_create_function(env, name, NAPI_AUTO_LENGTH, fn, nullptr, &f);
  napi_set_named_property(env, exports, name, f);
}

napi_value make_number(napi_env env, double v) {
  napi_value r;
  napi_create_double(env, v, &r);
  return r;
}

}  // namespace dcvg

// Large tensors are allocated and dropped all the time (every op returns a fresh array). With glibc's defaults each
// new multi-megabyte buffer comes from fresh pages, and touching them costs a page fault per 4 KiB — measured 17 ms
// of a 19 ms 42 MB allocate-and-copy here. A large top pad makes freed buffers get reused instead (3 ms). Setting it
// turns off glibc's adaptive mmap threshold, which would then stay at 128 KiB and send every mid-sized tensor to
// fresh mmap pages (a small DiT training step went from 550 to 770 ms, mostly in the kernel), so the threshold is
// pinned at glibc's maximum, 32 MiB. DCVG_MALLOC_TOP_PAD=0 keeps glibc's defaults.
static void tune_malloc() {
  long pad = 256L << 20;
  if (const char* e = std::getenv("DCVG_MALLOC_TOP_PAD")) pad = std::strtol(e, nullptr, 10);
  if (pad <= 0 || std::getenv("MALLOC_TOP_PAD_")) return;
  mallopt(M_TOP_PAD, static_cast<int>(std::min(pad, 1L << 30)));
  if (!std::getenv("MALLOC_MMAP_THRESHOLD_")) mallopt(M_MMAP_THRESHOLD, 32 << 20);
}


// adviseHugePages(Float32Array): asks the kernel to back the 2 MiB-aligned interior of a freshly allocated large buffer
// with transparent huge pages (madvise MADV_HUGEPAGE; the machine's THP mode is usually "madvise", so nothing is huge
// unless asked). A new multi-megabyte tensor then costs one page fault per 2 MiB on first touch instead of one per
// 4 KiB, and fewer TLB misses after. Call it before the buffer is first written. Purely advisory: returns whether the
// advice was taken; an unaligned or small buffer, or a kernel without THP, is a no-op. glibc's
// GLIBC_TUNABLES=glibc.malloc.hugetlb=1 does the same for every allocation, but only when set before the process starts.
static napi_value AdviseHugePages(napi_env env, napi_callback_info info) {
  return dcvg::guarded(env, [&]() -> napi_value {
    dcvg::Args a(env, info, 1, "adviseHugePages");
    dcvg::F32 buf = a.f32(0, "buffer");
    bool ok = false;
#ifdef MADV_HUGEPAGE
    constexpr uintptr_t kHuge = uintptr_t(2) << 20;
    const uintptr_t begin = reinterpret_cast<uintptr_t>(buf.data);
    const uintptr_t end = begin + buf.length * sizeof(float);
    const uintptr_t lo = (begin + kHuge - 1) & ~(kHuge - 1);
    const uintptr_t hi = end & ~(kHuge - 1);
    if (hi > lo) ok = madvise(reinterpret_cast<void*>(lo), hi - lo, MADV_HUGEPAGE) == 0;
#endif
    napi_value r;
    napi_get_boolean(env, ok, &r);
    return r;
  });
}

void register_metrics(napi_env env, napi_value exports);  // metrics.cc

static napi_value Init(napi_env env, napi_value exports) {
  tune_malloc();
  register_blas_conv(env, exports);
  register_elementwise(env, exports);
  register_attention(env, exports);
  register_convert(env, exports);
  register_metrics(env, exports);
  dcvg::export_fn(env, exports, "adviseHugePages", AdviseHugePages);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, Init)
