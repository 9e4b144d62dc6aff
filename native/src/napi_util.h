// Argument helpers for the dcvg_native addon. Every entry point validates its arguments with these before touching
// memory; a failed check throws a JS exception (TypeError / RangeError) carrying a message that names the argument,
// and the entry point returns nullptr straight away.
#pragma once
#include <node_api.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace dcvg {

// Thrown inside kernels' argument parsing; converted into a JS exception by the wrapper in addon.cc.
struct ArgError {
  bool range;  // RangeError if true, else TypeError
  std::string msg;
};

[[noreturn]] inline void type_error(const std::string& m) { throw ArgError{false, m}; }
[[noreturn]] inline void range_error(const std::string& m) { throw ArgError{true, m}; }

struct F32 {
  float* data = nullptr;
  size_t length = 0;
  bool null = false;
};

class Args {
 public:
  Args(napi_env env, napi_callback_info info, size_t expected, const char* fname);
  size_t count() const { return argv_.size(); }
  // Float32Array (not null)
  F32 f32(size_t i, const char* name) const;
  // Float32Array or null
  F32 f32_or_null(size_t i, const char* name) const;
  // finite integer >= min (as int64)
  int64_t i64(size_t i, const char* name, int64_t min = 0) const;
  double f64(size_t i, const char* name) const;
  bool boolean(size_t i, const char* name) const;
  // JS array of integers, each >= min; if expect_len >= 0 the length must match
  std::vector<int64_t> i64_array(size_t i, const char* name, long expect_len = -1, int64_t min = 0) const;
  // JS string
  std::string str(size_t i, const char* name) const;
  const char* fname() const { return fname_; }
  napi_env env() const { return env_; }

 private:
  napi_env env_;
  std::vector<napi_value> argv_;
  const char* fname_;
};

// Throw a RangeError unless `arr` holds at least `need` elements.
void need_len(const F32& arr, size_t need, const char* name, const char* fname);
// Product of dims with overflow check.
size_t numel(const std::vector<int64_t>& dims, const char* name);

using Impl = napi_value (*)(napi_env, napi_callback_info);
// Registers fn under `name` on exports.
void export_fn(napi_env env, napi_value exports, const char* name, Impl fn);

// Runs body (which returns a napi_value, or nullptr for `undefined`) and turns ArgError / std::exception into a JS
// exception.
template <typename F>
napi_value guarded(napi_env env, F&& body) {
  try {
    return body();
  } catch (const ArgError& e) {
    if (e.range)
      napi_throw_range_error(env, "ERR_DCVG_NATIVE_ARG", e.msg.c_str());
    else
      napi_throw_type_error(env, "ERR_DCVG_NATIVE_ARG", e.msg.c_str());
  } catch (const std::exception& e) {
    napi_throw_error(env, "ERR_DCVG_NATIVE", e.what());
  }
  return nullptr;
}

// A napi_value holding a double.
napi_value make_number(napi_env env, double v);

}  // namespace dcvg

// Registration hooks, one per source file.
void register_blas_conv(napi_env env, napi_value exports);
void register_elementwise(napi_env env, napi_value exports);
void register_attention(napi_env env, napi_value exports);
void register_convert(napi_env env, napi_value exports);
