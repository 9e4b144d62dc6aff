// Dense linear algebra and 3-D convolution for dcvg_native, plus a few runtime utilities:
//   gemm                    batched row-major sgemm: oneDNN's dnnl_sgemm or OpenBLAS's cblas_sgemm (the GEMM path)
//   conv3dForward           oneDNN convolution_forward, or direct depthwise kernels (see below)
//   conv3dBackwardData      oneDNN convolution_backward_data, or direct depthwise kernels
//   conv3dBackwardWeights   oneDNN convolution_backward_weights (with the bias gradient when asked), or depthwise
//   peakGflops              AVX2 FMA throughput probe
//   setGemmPath             which library `gemm` runs on ("onednn", "openblas", or "auto": the table below)
//   setNumThreads / getNumThreads / versions
//
// The GEMM path is picked by the CPU at run time (gemm_auto_path, from the measurements in docs/gemm-paths.md,
// `node dist/bench/gemm_paths.js`); DCVG_GEMM=onednn|openblas overrides it (read and checked in
// src/backend/native.ts, which calls setGemmPath). The convolutions always run on oneDNN's convolution primitives
// (or our depthwise kernels): OpenBLAS has no convolution, only the im2col route, which costs a copy of the input
// times the kernel volume. OpenBLAS stays linked either way so that setNumThreads reaches its thread pool too.
#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>
#include <dnnl.hpp>
#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <climits>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "napi_util.h"

// OpenBLAS's cblas.h (the openblas-pthread include folder, binding.gyp): cblas_sgemm and the openblas_* extensions.
#include <cblas.h>

namespace {

using dcvg::Args;
using dcvg::F32;
using dcvg::need_len;
using dcvg::range_error;

// ---------------------------------------------------------------------------------------------------------------------
// Signals and oneDNN
// ---------------------------------------------------------------------------------------------------------------------

// oneDNN's (2.6) JIT code does not survive a signal handler running on its thread: a handled signal (any signal with
// a process.on handler, e.g. the trainers' SIGINT / SIGTERM; V8's SIGPROF under --cpu-prof) during dnnl_sgemm crashed
// the process (heap corruption, segfault) within seconds, even on one thread; OpenBLAS's sgemm survives it. So
// asynchronous signals are blocked on the calling thread for the length of each oneDNN call (they stay pending and are
// handled right after), and the OpenMP workers, which only ever run kernels, block them for good
// (block_signals_in_workers, at load and on setNumThreads).

// Every signal but the synchronous ones (a fault in the blocked code must still stop it).
sigset_t async_signals() {
  sigset_t set;
  sigfillset(&set);
  for (int s : {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP, SIGABRT, SIGSYS}) sigdelset(&set, s);
  return set;
}

class SignalBlock {
 public:
  SignalBlock() {
    const sigset_t set = async_signals();
    pthread_sigmask(SIG_BLOCK, &set, &old_);
  }
  ~SignalBlock() { pthread_sigmask(SIG_SETMASK, &old_, nullptr); }
  SignalBlock(const SignalBlock&) = delete;
  SignalBlock& operator=(const SignalBlock&) = delete;

 private:
  sigset_t old_;
};

// Starts the OpenMP team (libgomp keeps its threads) while this thread blocks signals: threads inherit the creator's
// mask, so the workers never run a handler. Workers that exist already block them themselves (the region's body).
void block_signals_in_workers() {
  SignalBlock block;
#pragma omp parallel
  {
    if (omp_get_thread_num() != 0) {
      const sigset_t set = async_signals();
      pthread_sigmask(SIG_BLOCK, &set, nullptr);
    }
  }
}

// ---------------------------------------------------------------------------------------------------------------------
// Small helpers
// ---------------------------------------------------------------------------------------------------------------------

// Element counts come from JS numbers (up to 2^53), so products and sums are checked before they size anything.
size_t checked_mul(size_t a, size_t b, const char* fname, const char* what) {
  size_t r;
  if (__builtin_mul_overflow(a, b, &r)) range_error(std::string(fname) + ": size overflow computing " + what);
  return r;
}

size_t checked_add(size_t a, size_t b, const char* fname, const char* what) {
  size_t r;
  if (__builtin_add_overflow(a, b, &r)) range_error(std::string(fname) + ": size overflow computing " + what);
  return r;
}

std::string fmt_dims(const std::vector<int64_t>& d) {
  std::string s = "[";
  for (size_t i = 0; i < d.size(); i++) {
    if (i) s += ",";
    s += std::to_string(d[i]);
  }
  return s + "]";
}

// ---------------------------------------------------------------------------------------------------------------------
// gemm
// ---------------------------------------------------------------------------------------------------------------------

// Elements a batch of `batch` matrices of `size` elements, `stride` apart, spans (0 when nothing is read).
size_t batched_extent(int64_t batch, int64_t stride, size_t size, const char* fname, const char* what) {
  if (batch == 0 || size == 0) return 0;
  size_t last = checked_mul(static_cast<size_t>(batch - 1), static_cast<size_t>(stride), fname, what);
  return checked_add(last, size, fname, what);
}

// dnnl_sgemm is weak when B is transposed and M is small next to N: it repacks the whole N x K matrix B on every call
// (M=32, N=1024, K=4096: 11 ms instead of 0.7 ms). Linear layers on few tokens (x @ W^T) hit exactly that case, so
// there we compute C^T = op(B)^T op(A)^T instead, which puts the big matrix on the side dnnl_sgemm streams through,
// and transpose the small M x N result into C.
bool use_swapped(bool tB, int64_t M, int64_t N, int64_t K) { return tB && M <= 128 && N >= 2 * M && N * K >= 65536; }

// ----- The GEMM path --------------------------------------------------------------------------------------------------

enum GemmPath : int { kGemmOneDnn = 0, kGemmOpenBlas = 1 };

const char* gemm_path_name(int p) { return p == kGemmOpenBlas ? "openblas" : "onednn"; }

// The table: which library runs `gemm` on this CPU, decided by the instruction set oneDNN dispatches to here (which
// follows the CPU, capped by ONEDNN_MAX_CPU_ISA, so the AVX2 emulation of scripts/test-avx2.sh gets the AVX2 row).
// Measured with bench/gemm_paths.ts on the models' GEMM shapes, one core, CPU time (docs/gemm-paths.md); the figure is
// the geometric mean of OpenBLAS time / oneDNN time:
//   AVX-512 (avx512_core and up)   oneDNN: 1.13 against OpenBLAS's AVX-512 (Cooperlake) kernels, 1.90 against its
//                                  Haswell (AVX2) kernels, which OPENBLAS_CORETYPE=Haswell pins it to
//   AVX2 (Haswell .. Zen 3)        oneDNN: 1.04 (a tie on large shapes, 2.7 on one-row products), and it shares the
//                                  OpenMP pool with our other kernels instead of spinning pthreads beside them
//   AVX (Sandy/Ivy Bridge)         OpenBLAS: 0.85 (faster on every shape but one-row products)
//   SSE4.1                         oneDNN: 1.15
int gemm_auto_path() {
  return dnnl_get_effective_cpu_isa() == dnnl_cpu_isa_avx ? kGemmOpenBlas : kGemmOneDnn;
}

// -1 until first use (then the table's choice) or until setGemmPath.
std::atomic<int> g_gemm_path{-1};

int gemm_path() {
  int p = g_gemm_path.load(std::memory_order_relaxed);
  if (p < 0) {
    p = gemm_auto_path();
    g_gemm_path.store(p, std::memory_order_relaxed);
  }
  return p;
}

// cblas takes 32-bit sizes in this OpenBLAS build; larger problems stay on oneDNN (64-bit sizes).
bool fits_blasint(int64_t M, int64_t N, int64_t K) { return M <= INT_MAX && N <= INT_MAX && K <= INT_MAX; }

// One row-major C = alpha op(A) op(B) + beta C. `tmp` is scratch for the swapped form. Safe inside an OpenMP region
// (dnnl_sgemm then runs on the calling thread only). `path` is the library to use.
dnnl_status_t sgemm_one(int path, bool tA, bool tB, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                        const float* B, float beta, float* C, std::vector<float>& tmp) {
  // Densely stored: each leading dimension is the stored row length.
  const dnnl_dim_t lda = tA ? M : K, ldb = tB ? K : N;
  if (path == kGemmOpenBlas && fits_blasint(M, N, K)) {
    // OpenBLAS packs both operands itself, so the swapped form below buys nothing here.
    cblas_sgemm(CblasRowMajor, tA ? CblasTrans : CblasNoTrans, tB ? CblasTrans : CblasNoTrans, static_cast<int>(M),
                static_cast<int>(N), static_cast<int>(K), alpha, A, static_cast<int>(lda), B, static_cast<int>(ldb), beta,
                C, static_cast<int>(N));
    return dnnl_success;
  }
  if (!use_swapped(tB, M, N, K))
    return dnnl_sgemm(tA ? 'T' : 'N', tB ? 'T' : 'N', M, N, K, alpha, A, lda, B, ldb, beta, C, N);

  tmp.resize(static_cast<size_t>(M * N));
  float* T = tmp.data();  // (N, M) = op(B)^T op(A)^T
  const dnnl_status_t st = dnnl_sgemm(tB ? 'N' : 'T', tA ? 'N' : 'T', N, M, K, alpha, B, ldb, A, lda, 0.f, T, M);
  if (st != dnnl_success) return st;
  constexpr int64_t kBlk = 64;
#pragma omp parallel for schedule(static) if (!omp_in_parallel() && M * N >= (1 << 16))
  for (int64_t j0 = 0; j0 < N; j0 += kBlk) {
    const int64_t j1 = std::min(N, j0 + kBlk);
    for (int64_t i = 0; i < M; i++) {
      float* c = C + i * N;
      if (beta == 0.f)
        for (int64_t j = j0; j < j1; j++) c[j] = T[j * M + i];
      else
        for (int64_t j = j0; j < j1; j++) c[j] = T[j * M + i] + beta * c[j];
    }
  }
  return dnnl_success;
}

napi_value gemm_impl(napi_env env, napi_callback_info info) {
  return dcvg::guarded(env, [&]() -> napi_value {
    const char* fn = "gemm";
    Args a(env, info, 14, fn);
    const bool tA = a.boolean(0, "transA"), tB = a.boolean(1, "transB");
    const int64_t batch = a.i64(2, "batch"), M = a.i64(3, "M"), N = a.i64(4, "N"), K = a.i64(5, "K");
    const float alpha = static_cast<float>(a.f64(6, "alpha"));
    const F32 A = a.f32(7, "A");
    const int64_t sA = a.i64(8, "strideA");
    const F32 B = a.f32(9, "B");
    const int64_t sB = a.i64(10, "strideB");
    const float beta = static_cast<float>(a.f64(11, "beta"));
    const F32 C = a.f32(12, "C");
    const int64_t sC = a.i64(13, "strideC");

    const size_t mk = checked_mul(M, K, fn, "M*K"), kn = checked_mul(K, N, fn, "K*N"), mn = checked_mul(M, N, fn, "M*N");
    need_len(A, batched_extent(batch, sA, mk, fn, "A extent"), "A", fn);
    need_len(B, batched_extent(batch, sB, kn, fn, "B extent"), "B", fn);
    need_len(C, batched_extent(batch, sC, mn, fn, "C extent"), "C", fn);
    if (mn == 0 || batch == 0) return nullptr;

    if (K == 0) {
      // Empty inner product: C = beta * C (and exactly 0 for beta == 0, even over NaN garbage), once per batch entry
      // so that a broadcast C (strideC 0) sees the same sequence of updates as the general path.
      for (int64_t b = 0; b < batch; b++) {
        float* c = C.data + b * sC;
        if (beta == 0.f)
          std::fill(c, c + mn, 0.f);
        else
          for (size_t i = 0; i < mn; i++) c[i] *= beta;
      }
      return nullptr;
    }

    // Many independent matrices: one single-threaded gemm per OpenMP thread beats a multi-threaded gemm per matrix
    // for small and medium sizes (measured 1.2-2x), and is on par for large ones when the batch divides evenly.
    // Only when the C matrices do not overlap, since they are then written concurrently.
    // OpenBLAS (pthreads build) threads each call itself and is not meant to be called from many OpenMP threads at once,
    // so on that path the batch runs one multi-threaded call after another.
    const int path = gemm_path();
    const int nthr = omp_get_max_threads();
    SignalBlock no_signals;  // see SignalBlock
    const double flops_each = 2.0 * M * N * K;
    const bool parallel_batch = path == kGemmOneDnn && nthr > 1 && batch >= nthr && static_cast<size_t>(sC) >= mn &&
                                (batch % nthr == 0 || batch >= 4 * nthr || flops_each < 4e6);
    std::atomic<bool> failed{false};
    if (parallel_batch) {
#pragma omp parallel
      {
        std::vector<float> tmp;
#pragma omp for schedule(static)
        for (int64_t b = 0; b < batch; b++)
          if (sgemm_one(path, tA, tB, M, N, K, alpha, A.data + b * sA, B.data + b * sB, beta, C.data + b * sC, tmp) !=
              dnnl_success)
            failed = true;
      }
    } else {
      std::vector<float> tmp;
      for (int64_t b = 0; b < batch && !failed; b++)
        if (sgemm_one(path, tA, tB, M, N, K, alpha, A.data + b * sA, B.data + b * sB, beta, C.data + b * sC, tmp) !=
            dnnl_success)
          failed = true;
    }
    if (failed) throw std::runtime_error("gemm: dnnl_sgemm failed");  // cblas_sgemm reports nothing
    return nullptr;
  });
}

// ---------------------------------------------------------------------------------------------------------------------
// conv3d: argument parsing and validation
// ---------------------------------------------------------------------------------------------------------------------

struct ConvGeom {
  int64_t N, C, T, H, W;   // input
  int64_t O, KT, KH, KW;   // weights (O, C/G, KT, KH, KW)
  int64_t To, Ho, Wo;      // output spatial
  int64_t st, sh, sw;      // strides
  int64_t pad[6];          // t_front, t_back, h_top, h_bottom, w_left, w_right
  int64_t G;               // groups
  size_t x_len, w_len, y_len;
};

// Parses argument slots 0..5 (xShape, wShape, yShape, stride, padding, groups) and checks that they describe one
// well-formed convolution. Throws a RangeError naming all the shapes otherwise.
ConvGeom parse_conv(const Args& a, const char* fn) {
  const auto xs = a.i64_array(0, "xShape", 5), ws = a.i64_array(1, "wShape", 5), ys = a.i64_array(2, "yShape", 5);
  const auto stride = a.i64_array(3, "stride", 3, 1);
  const auto pad = a.i64_array(4, "padding", 6, 0);
  const int64_t G = a.i64(5, "groups", 1);

  auto fail = [&](const std::string& why) {
    range_error(std::string(fn) + ": " + why + " (xShape=" + fmt_dims(xs) + " wShape=" + fmt_dims(ws) +
                " yShape=" + fmt_dims(ys) + " stride=" + fmt_dims(stride) + " padding=" + fmt_dims(pad) +
                " groups=" + std::to_string(G) + ")");
  };

  ConvGeom g{};
  g.N = xs[0], g.C = xs[1], g.T = xs[2], g.H = xs[3], g.W = xs[4];
  g.O = ws[0], g.KT = ws[2], g.KH = ws[3], g.KW = ws[4];
  g.st = stride[0], g.sh = stride[1], g.sw = stride[2];
  for (int i = 0; i < 6; i++) g.pad[i] = pad[i];
  g.G = G;

  if (g.T < 1 || g.H < 1 || g.W < 1) fail("input spatial dims must be >= 1");
  if (g.KT < 1 || g.KH < 1 || g.KW < 1) fail("kernel dims must be >= 1");
  // Keep every dim well inside oneDNN's int64 arithmetic (it multiplies dims together internally).
  for (int64_t d : {g.N, g.C, g.T, g.H, g.W, g.O, g.KT, g.KH, g.KW, g.st, g.sh, g.sw, pad[0], pad[1], pad[2], pad[3],
                    pad[4], pad[5], G})
    if (d > (int64_t(1) << 31)) fail("dimension too large");
  if (g.C % G != 0) fail("input channels must be divisible by groups");
  if (g.O % G != 0) fail("output channels must be divisible by groups");
  if (ws[1] * G != g.C) fail("wShape[1] * groups must equal input channels");

  const int64_t et = g.T + pad[0] + pad[1], eh = g.H + pad[2] + pad[3], ew = g.W + pad[4] + pad[5];
  if (et < g.KT || eh < g.KH || ew < g.KW) fail("kernel larger than padded input");
  g.To = (et - g.KT) / g.st + 1;
  g.Ho = (eh - g.KH) / g.sh + 1;
  g.Wo = (ew - g.KW) / g.sw + 1;
  if (ys[0] != g.N || ys[1] != g.O || ys[2] != g.To || ys[3] != g.Ho || ys[4] != g.Wo)
    fail("yShape must be " + fmt_dims({g.N, g.O, g.To, g.Ho, g.Wo}));

  g.x_len = dcvg::numel(xs, (std::string(fn) + " xShape").c_str());
  g.w_len = dcvg::numel(ws, (std::string(fn) + " wShape").c_str());
  g.y_len = dcvg::numel(ys, (std::string(fn) + " yShape").c_str());
  return g;
}

// ---------------------------------------------------------------------------------------------------------------------
// conv3d: oneDNN primitives, cached per problem
// ---------------------------------------------------------------------------------------------------------------------

using dnnl::memory;
using tag = dnnl::memory::format_tag;
using dt = dnnl::memory::data_type;

dnnl::engine& cpu_engine() {
  static dnnl::engine eng(dnnl::engine::kind::cpu, 0);
  return eng;
}

dnnl::stream& cpu_stream() {
  static dnnl::stream s(cpu_engine());
  return s;
}

// Grow-only buffers for data in the primitives' blocked layouts and for their scratchpads. Shared by
// all cached problems (calls are serialised by g_conv_mutex), so the footprint is that of the largest problem rather
// than the sum over all shapes seen, and steady-state calls touch no fresh pages (first-touch page faults cost as much
// as the reorders themselves).
class Workspace {
 public:
  void* get(size_t bytes) {
    if (bytes > cap_) {
      const size_t align = 2u << 20;  // huge-page aligned so large buffers can be backed by THP
      size_t want = std::max(bytes + bytes / 4, size_t(4096));
      want = (want + align - 1) / align * align;
      void* p = std::aligned_alloc(align, want);
      if (!p) throw std::bad_alloc();
#ifdef MADV_HUGEPAGE
      madvise(p, want, MADV_HUGEPAGE);  // THP mode is usually "madvise": without asking, nothing is huge
#endif
      buf_.reset(p);
      cap_ = want;
    }
    return buf_.get();
  }

 private:
  struct Free {
    void operator()(void* p) const { std::free(p); }
  };
  std::unique_ptr<void, Free> buf_;
  size_t cap_ = 0;
};

enum { kSlotX = 0, kSlotW = 1, kSlotY = 2, kSlotScratch = 3, kSlots = 4 };
Workspace g_ws[kSlots];
std::mutex g_conv_mutex;

enum class ConvKind { Fwd, BwdData, BwdWeights };

// One of x / w / y as the primitive sees it: either the user's plain array directly, or a blocked copy in a
// workspace slot with a reorder to (inputs) or from (outputs) the user's layout.
struct Operand {
  bool is_input = true;
  bool reorder = false;
  int slot = 0;
  memory user_mem;  // plain layout, data handle set per call
  memory prim_mem;  // primitive's layout (only when reorder)
  dnnl::reorder reorder_prim;

  void init(const memory::desc& user_md, const memory::desc& prim_md, bool input, int ws_slot) {
    auto& eng = cpu_engine();
    is_input = input;
    slot = ws_slot;
    user_mem = memory(user_md, eng, DNNL_MEMORY_NONE);
    reorder = !(user_md == prim_md);
    if (reorder) {
      prim_mem = memory(prim_md, eng, DNNL_MEMORY_NONE);
      reorder_prim = input ? dnnl::reorder(dnnl::reorder::primitive_desc(eng, user_md, eng, prim_md))
                           : dnnl::reorder(dnnl::reorder::primitive_desc(eng, prim_md, eng, user_md));
    }
  }
  // The memory the convolution primitive reads or writes.
  const memory& prim() const { return reorder ? prim_mem : user_mem; }
  // Points the operand at this call's user array and (if blocked) the workspace.
  void bind(const float* user) {
    user_mem.set_data_handle(const_cast<float*>(user));
    if (reorder) prim_mem.set_data_handle(g_ws[slot].get(prim_mem.get_desc().get_size()));
  }
  void before(dnnl::stream& s) {
    if (reorder && is_input) reorder_prim.execute(s, user_mem, prim_mem);
  }
  void after(dnnl::stream& s) {
    if (reorder && !is_input) reorder_prim.execute(s, prim_mem, user_mem);
  }
};

struct ConvEntry {
  dnnl::primitive prim;
  Operand x, w, y;
  memory bias_mem;     // user's bias / bias gradient (plain 1-D), when present
  memory scratch_mem;  // user-managed scratchpad
  size_t scratch_bytes = 0;
  std::unordered_map<int, memory> args;  // refers to the memory objects above; only their handles change per call
};

using ConvKey = std::vector<int64_t>;
std::map<ConvKey, std::unique_ptr<ConvEntry>> g_conv_cache;
// A video model has few distinct convolution problems; the bound only guards against unbounded growth with
// ever-changing input sizes.
constexpr size_t kMaxCachedConvs = 512;

ConvKey make_key(ConvKind kind, bool bias, const ConvGeom& g) {
  // The thread count is part of the key: oneDNN fixes its work split when the primitive is created.
  return {static_cast<int64_t>(kind), bias, omp_get_max_threads(), g.N, g.C, g.T, g.H, g.W, g.O, g.KT, g.KH, g.KW,
          g.st, g.sh, g.sw, g.pad[0], g.pad[1], g.pad[2], g.pad[3], g.pad[4], g.pad[5], g.G};
}

std::unique_ptr<ConvEntry> build_entry(ConvKind kind, bool bias, const ConvGeom& g) {
  auto& eng = cpu_engine();
  const memory::dims x_dims{g.N, g.C, g.T, g.H, g.W}, y_dims{g.N, g.O, g.To, g.Ho, g.Wo};
  // Grouped weights are (G, O/G, C/G, k...): the same bytes as torch's (O, C/G, k...).
  const memory::dims w_dims = g.G > 1 ? memory::dims{g.G, g.O / g.G, g.C / g.G, g.KT, g.KH, g.KW}
                                      : memory::dims{g.O, g.C, g.KT, g.KH, g.KW};
  const memory::dims b_dims{g.O};
  const memory::dims strides{g.st, g.sh, g.sw};
  const memory::dims pad_l{g.pad[0], g.pad[2], g.pad[4]}, pad_r{g.pad[1], g.pad[3], g.pad[5]};

  const memory::desc x_user(x_dims, dt::f32, tag::ncdhw), y_user(y_dims, dt::f32, tag::ncdhw);
  const memory::desc w_user(w_dims, dt::f32, g.G > 1 ? tag::goidhw : tag::oidhw);
  const memory::desc b_user(b_dims, dt::f32, tag::x);
  // Let oneDNN pick its fastest (usually channel-blocked) layouts; we reorder at the boundary.
  const memory::desc x_any(x_dims, dt::f32, tag::any), y_any(y_dims, dt::f32, tag::any), w_any(w_dims, dt::f32, tag::any);

  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);

  const auto alg = dnnl::algorithm::convolution_direct;
  const auto fwd_prop = dnnl::prop_kind::forward_training;
  const bool fwd_bias = bias && kind != ConvKind::BwdData;

#if DNNL_VERSION_MAJOR >= 3
  // oneDNN 3.x: primitive descriptors are built directly from the engine and the problem (no op descriptors).
  const auto fwd_pd =
      fwd_bias ? dnnl::convolution_forward::primitive_desc(eng, fwd_prop, alg, x_any, w_any, b_user, y_any, strides,
                                                           pad_l, pad_r, attr)
               : dnnl::convolution_forward::primitive_desc(eng, fwd_prop, alg, x_any, w_any, y_any, strides, pad_l,
                                                           pad_r, attr);
#else
  const auto fwd_desc =
      fwd_bias ? dnnl::convolution_forward::desc(fwd_prop, alg, x_any, w_any, b_user, y_any, strides, pad_l, pad_r)
               : dnnl::convolution_forward::desc(fwd_prop, alg, x_any, w_any, y_any, strides, pad_l, pad_r);
  const auto fwd_pd = dnnl::convolution_forward::primitive_desc(fwd_desc, attr, eng);
#endif

  auto e = std::make_unique<ConvEntry>();
  memory::desc scratch_md;
  switch (kind) {
    case ConvKind::Fwd: {
      e->prim = dnnl::convolution_forward(fwd_pd);
      e->x.init(x_user, fwd_pd.src_desc(), true, kSlotX);
      e->w.init(w_user, fwd_pd.weights_desc(), true, kSlotW);
      e->y.init(y_user, fwd_pd.dst_desc(), false, kSlotY);
      scratch_md = fwd_pd.scratchpad_desc();
      e->args = {{DNNL_ARG_SRC, e->x.prim()}, {DNNL_ARG_WEIGHTS, e->w.prim()}, {DNNL_ARG_DST, e->y.prim()}};
      if (bias) {
        e->bias_mem = memory(b_user, eng, DNNL_MEMORY_NONE);
        e->args[DNNL_ARG_BIAS] = e->bias_mem;
      }
      break;
    }
    case ConvKind::BwdData: {
      auto make_pd = [&](const memory::desc& x_md) {
#if DNNL_VERSION_MAJOR >= 3
        return dnnl::convolution_backward_data::primitive_desc(eng, alg, x_md, w_any, y_any, strides, pad_l, pad_r,
                                                               fwd_pd, attr);
#else
        const auto d = dnnl::convolution_backward_data::desc(alg, x_md, w_any, y_any, strides, pad_l, pad_r);
        return dnnl::convolution_backward_data::primitive_desc(d, attr, eng, fwd_pd);
#endif
      };
      // With very few input channels the blocked diff_src layout pads C up to 16 and the direct kernel wastes most of
      // its work (C=3: 10 ms); asking for the plain layout selects the gemm-based kernel instead (C=3: 2.8 ms, C=1: 7x).
      // From C=4 the direct kernel wins despite the padding: the gemm-based one ends in a scalar col2im. CPU ms on
      // (1, C, 13, 128, 128), k3, O=8, 2 threads: C=2 (64x64) 3.2 vs 4.5, C=3 18 vs 25, C=4 28 vs 23, C=8 50 vs 23;
      // C=12 (64x64, O=12) 19.5 vs 7 (gemm-based vs direct). Keep it only if oneDNN did not fall back to its reference
      // implementation.
      auto pd = make_pd(x_any);
      if (g.C < 4) {
        auto plain = make_pd(x_user);
        if (std::string(plain.impl_info_str()).rfind("ref", 0) != 0) pd = plain;
      }
      e->prim = dnnl::convolution_backward_data(pd);
      e->y.init(y_user, pd.diff_dst_desc(), true, kSlotY);
      e->w.init(w_user, pd.weights_desc(), true, kSlotW);
      e->x.init(x_user, pd.diff_src_desc(), false, kSlotX);
      scratch_md = pd.scratchpad_desc();
      e->args = {{DNNL_ARG_DIFF_DST, e->y.prim()}, {DNNL_ARG_WEIGHTS, e->w.prim()}, {DNNL_ARG_DIFF_SRC, e->x.prim()}};
      break;
    }
    case ConvKind::BwdWeights: {
      auto make_pd = [&](const memory::desc& x_md, const memory::desc& y_md) {
#if DNNL_VERSION_MAJOR >= 3
        return bias ? dnnl::convolution_backward_weights::primitive_desc(eng, alg, x_md, w_any, b_user, y_md, strides,
                                                                         pad_l, pad_r, fwd_pd, attr)
                    : dnnl::convolution_backward_weights::primitive_desc(eng, alg, x_md, w_any, y_md, strides, pad_l,
                                                                         pad_r, fwd_pd, attr);
#else
        const auto d =
            bias ? dnnl::convolution_backward_weights::desc(alg, x_md, w_any, b_user, y_md, strides, pad_l, pad_r)
                 : dnnl::convolution_backward_weights::desc(alg, x_md, w_any, y_md, strides, pad_l, pad_r);
        return dnnl::convolution_backward_weights::primitive_desc(d, attr, eng, fwd_pd);
#endif
      };
      // When C is not a multiple of 16 (but not tiny), oneDNN's own choice is a gemm-based kernel that is 1.3-3x slower
      // than its direct kernel on channels-last data (C=4: 7.6 -> 4.2 ms, C=12: 16.7 -> 11.8 ms, C=24: 2.2 -> 1.4 ms
      // including the extra reorders). For C < 4 and multiples of 16 its choice is the faster one.
      auto pd = make_pd(x_any, y_any);
      if (g.G == 1 && g.C >= 4 && g.C % 16 != 0) {
        auto cl = make_pd(memory::desc(x_dims, dt::f32, tag::ndhwc), memory::desc(y_dims, dt::f32, tag::ndhwc));
        if (std::string(cl.impl_info_str()).rfind("ref", 0) != 0) pd = cl;
      }
      e->prim = dnnl::convolution_backward_weights(pd);
      e->x.init(x_user, pd.src_desc(), true, kSlotX);
      e->y.init(y_user, pd.diff_dst_desc(), true, kSlotY);
      e->w.init(w_user, pd.diff_weights_desc(), false, kSlotW);
      scratch_md = pd.scratchpad_desc();
      e->args = {{DNNL_ARG_SRC, e->x.prim()}, {DNNL_ARG_DIFF_DST, e->y.prim()}, {DNNL_ARG_DIFF_WEIGHTS, e->w.prim()}};
      if (bias) {
        e->bias_mem = memory(b_user, eng, DNNL_MEMORY_NONE);
        e->args[DNNL_ARG_DIFF_BIAS] = e->bias_mem;
      }
      break;
    }
  }
  e->scratch_bytes = scratch_md.get_size();
  if (e->scratch_bytes > 0) {
    e->scratch_mem = memory(scratch_md, eng, DNNL_MEMORY_NONE);
    e->args[DNNL_ARG_SCRATCHPAD] = e->scratch_mem;
  }
  return e;
}

ConvEntry& get_entry(ConvKind kind, bool bias, const ConvGeom& g) {
  ConvKey key = make_key(kind, bias, g);
  auto it = g_conv_cache.find(key);
  if (it != g_conv_cache.end()) return *it->second;
  auto e = build_entry(kind, bias, g);  // may throw; nothing is inserted then
  if (g_conv_cache.size() >= kMaxCachedConvs) g_conv_cache.clear();
  return *g_conv_cache.emplace(std::move(key), std::move(e)).first->second;
}

// Runs one cached convolution. x, w, y are the user's arrays in the roles of src / weights / dst (their direction
// follows from the kind); bias is the bias or its gradient, or nullptr.
void run_conv(ConvKind kind, const ConvGeom& g, const float* x, const float* w, const float* y, const float* bias) {
  SignalBlock no_signals;  // see SignalBlock
  std::lock_guard<std::mutex> lock(g_conv_mutex);
  ConvEntry& e = get_entry(kind, bias != nullptr, g);
  auto& s = cpu_stream();
  // Every operand has its own workspace slot, so binding one never moves another's buffer.
  e.x.bind(x);
  e.w.bind(w);
  e.y.bind(y);
  if (bias) e.bias_mem.set_data_handle(const_cast<float*>(bias));
  if (e.scratch_bytes) e.scratch_mem.set_data_handle(g_ws[kSlotScratch].get(e.scratch_bytes));

  e.x.before(s);
  e.w.before(s);
  e.y.before(s);
  e.prim.execute(s, e.args);
  e.x.after(s);
  e.w.after(s);
  e.y.after(s);
  s.wait();
}

// ---------------------------------------------------------------------------------------------------------------------
// conv3d: depthwise (one input channel per group) direct kernels.
//
// oneDNN 2.6 has no JIT depthwise kernel for 3-D f32; it falls back to im2col + one tiny gemm per group, ~4 GFLOP/s
// on a (C=128, T=8, 32x32, k3) problem (torch goes through the same path). These direct loops work on the plain layout
// and run ~10x faster. Each channel's volume is processed by one thread. Rows are padded along W in a per-thread
// buffer, so the inner loops over output columns have no bounds checks and vectorise; out-of-range T/H taps are
// skipped row by row.
// ---------------------------------------------------------------------------------------------------------------------

bool is_depthwise(const ConvGeom& g) { return g.G > 1 && g.C == g.G; }

struct DwDims {
  int64_t m;   // output channels per input channel
  int64_t Wp;  // W-padded input row length
  int64_t s_in, s_out, taps;
  explicit DwDims(const ConvGeom& g)
      : m(g.O / g.G), Wp(g.W + g.pad[4] + g.pad[5]), s_in(g.T * g.H * g.W), s_out(g.To * g.Ho * g.Wo),
        taps(g.KT * g.KH * g.KW) {}
};

typedef float v16f __attribute__((vector_size(64)));
constexpr int64_t kV = 16;

inline v16f load_v(const float* p) {
  v16f v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

inline v16f load_v(const float* p, int64_t step) {
  v16f v;
  for (int64_t i = 0; i < kV; i++) v[i] = p[i * step];
  return v;
}

// Copies `rows` rows of `width` floats into rows of left + width + right floats with zeros on both sides, followed by
// slack for vector over-reads; returns the copy.
float* pad_rows(const float* src, int64_t rows, int64_t width, int64_t left, int64_t right, int64_t slack,
                std::vector<float>& buf, size_t at = 0) {
  const int64_t wp = left + width + right;
  const size_t need = at + static_cast<size_t>(rows * wp + slack);
  if (buf.size() < need) buf.resize(need);
  float* out = buf.data() + at;
  for (int64_t r = 0; r < rows; r++) {
    float* o = out + r * wp;
    std::fill_n(o, left, 0.f);
    std::memcpy(o + left, src + r * width, width * sizeof(float));
    std::fill_n(o + left + width, right, 0.f);
  }
  std::fill_n(out + rows * wp, slack, 0.f);
  return out;
}

// Copies `planes` planes of (rows, width) into planes of (top + rows + bottom, left + width + right) with zero borders,
// followed by `slack` zeros; returns the copy.
float* pad_planes(const float* src, int64_t planes, int64_t rows, int64_t width, int64_t top, int64_t bottom,
                  int64_t left, int64_t right, int64_t slack, std::vector<float>& buf, size_t at = 0) {
  const int64_t pitch = left + width + right, plane = (top + rows + bottom) * pitch;
  const size_t need = at + static_cast<size_t>(planes * plane + slack);
  if (buf.size() < need) buf.resize(need);
  float* out = buf.data() + at;
  std::fill_n(out, planes * plane + slack, 0.f);
  for (int64_t p = 0; p < planes; p++)
    for (int64_t r = 0; r < rows; r++)
      std::memcpy(out + p * plane + (top + r) * pitch + left, src + (p * rows + r) * width, width * sizeof(float));
  return out;
}

// out[i] = init + sum_j wv[j] * src[j][i * step] for i < n. Each accumulator covers 16 outputs and four of them take
// turns over the taps, so FMA latency is hidden and each tap costs one load and one FMA per 16 outputs. The last
// vector may read (never write) up to 16 * step floats past src[j][(n - 1) * step]: callers provide that slack.
template <bool kUnit>
void tap_rows(float* out, int64_t n, int64_t step, float init, const float* const* src, const float* wv, int64_t nt) {
  auto ld = [step](const float* p) { return kUnit ? load_v(p) : load_v(p, step); };
  int64_t i0 = 0;
  for (; i0 + 2 * kV <= n; i0 += 2 * kV) {
    const int64_t o0 = i0 * step, o1 = (i0 + kV) * step;
    v16f a0 = v16f{} + init, a1{}, a2{}, a3{}, b0 = v16f{} + init, b1{}, b2{}, b3{};
    int64_t j = 0;
    for (; j + 4 <= nt; j += 4) {
      a0 += wv[j] * ld(src[j] + o0);
      b0 += wv[j] * ld(src[j] + o1);
      a1 += wv[j + 1] * ld(src[j + 1] + o0);
      b1 += wv[j + 1] * ld(src[j + 1] + o1);
      a2 += wv[j + 2] * ld(src[j + 2] + o0);
      b2 += wv[j + 2] * ld(src[j + 2] + o1);
      a3 += wv[j + 3] * ld(src[j + 3] + o0);
      b3 += wv[j + 3] * ld(src[j + 3] + o1);
    }
    for (; j < nt; j++) {
      a0 += wv[j] * ld(src[j] + o0);
      b0 += wv[j] * ld(src[j] + o1);
    }
    const v16f ra = (a0 + a1) + (a2 + a3), rb = (b0 + b1) + (b2 + b3);
    std::memcpy(out + i0, &ra, sizeof ra);
    std::memcpy(out + i0 + kV, &rb, sizeof rb);
  }
  for (; i0 < n; i0 += kV) {
    const int64_t o0 = i0 * step;
    v16f a0 = v16f{} + init, a1{}, a2{}, a3{};
    int64_t j = 0;
    for (; j + 4 <= nt; j += 4) {
      a0 += wv[j] * ld(src[j] + o0);
      a1 += wv[j + 1] * ld(src[j + 1] + o0);
      a2 += wv[j + 2] * ld(src[j + 2] + o0);
      a3 += wv[j + 3] * ld(src[j + 3] + o0);
    }
    for (; j < nt; j++) a0 += wv[j] * ld(src[j] + o0);
    const v16f r = (a0 + a1) + (a2 + a3);
    std::memcpy(out + i0, &r, std::min(kV, n - i0) * sizeof(float));
  }
}

// Input row index for output row `o` and tap `k` along one axis, or -1 when it falls in the zero padding.
inline int64_t in_row(int64_t o, int64_t k, int64_t stride, int64_t pad_front, int64_t extent) {
  const int64_t i = o * stride - pad_front + k;
  return (i >= 0 && i < extent) ? i : -1;
}

// Output row index that reads input row `i` through tap `k`, or -1 when there is none (padding or between strides).
inline int64_t out_row(int64_t i, int64_t k, int64_t stride, int64_t pad_front, int64_t extent) {
  const int64_t q = i + pad_front - k;
  if (q < 0 || q % stride != 0 || q / stride >= extent) return -1;
  return q / stride;
}

// Unit H and W strides: each zero-padded (H, W) input plane is treated as one long row of pitch Wp, so a whole output
// plane (computed at pitch Wp, then compacted to Wo) is one tap_rows call whose taps are (valid kt) x KH x KW offsets.
// The Wp - Wo extra columns per row are wasted work (KW - 1 of them), far cheaper than per-row setup.
void dw_forward_planes(const ConvGeom& g, const float* x, const float* w, const float* bias, float* y) {
  const DwDims d(g);
  const int64_t P = d.Wp, Hp = g.H + g.pad[2] + g.pad[3], plane = Hp * P;
  // Valid outputs never leave their padded plane; discarded columns of the last plane read at most this far past it.
  const int64_t slack = (g.KH - 1) * P + g.KW + kV + 1;
#pragma omp parallel
  {
    std::vector<float> buf, tmp(static_cast<size_t>(g.Ho * P));
    std::vector<const float*> ptr(d.taps);
    std::vector<float> wv(d.taps);
    int64_t padded_for = -1;  // (n, c) whose padded copy is in buf: consecutive outputs often share it (m > 1)
    const float* xp = nullptr;
#pragma omp for collapse(2) schedule(static)
    for (int64_t n = 0; n < g.N; n++)
      for (int64_t o = 0; o < g.O; o++) {
        const int64_t nc = n * g.C + o / d.m;
        if (nc != padded_for) {
          xp = pad_planes(x + nc * d.s_in, g.T, g.H, g.W, g.pad[2], g.pad[3], g.pad[4], g.pad[5], slack, buf);
          padded_for = nc;
        }
        const float* wk = w + o * d.taps;
        float* yc = y + (n * g.O + o) * d.s_out;
        const float b0 = bias ? bias[o] : 0.f;
        for (int64_t to = 0; to < g.To; to++) {
          int64_t nt = 0;
          for (int64_t kt = 0; kt < g.KT; kt++) {
            const int64_t t = in_row(to, kt, g.st, g.pad[0], g.T);
            if (t < 0) continue;
            for (int64_t kh = 0; kh < g.KH; kh++)
              for (int64_t kw = 0; kw < g.KW; kw++, nt++) {
                ptr[nt] = xp + t * plane + kh * P + kw;
                wv[nt] = wk[(kt * g.KH + kh) * g.KW + kw];
              }
          }
          tap_rows<true>(tmp.data(), g.Ho * P, 1, b0, ptr.data(), wv.data(), nt);
          for (int64_t ho = 0; ho < g.Ho; ho++)
            std::memcpy(yc + (to * g.Ho + ho) * g.Wo, tmp.data() + ho * P, g.Wo * sizeof(float));
        }
      }
  }
}

// Any strides: one tap_rows call per output row.
void dw_forward_rows(const ConvGeom& g, const float* x, const float* w, const float* bias, float* y) {
  const DwDims d(g);
  const int64_t slack = (kV + 1) * g.sw;
#pragma omp parallel
  {
    std::vector<float> buf;
    std::vector<const float*> ptr(d.taps);
    std::vector<float> wv(d.taps);
    int64_t padded_for = -1;  // (n, c) whose padded copy is in buf: consecutive outputs often share it (m > 1)
    const float* xp = nullptr;
#pragma omp for collapse(2) schedule(static)
    for (int64_t n = 0; n < g.N; n++)
      for (int64_t o = 0; o < g.O; o++) {
        const int64_t nc = n * g.C + o / d.m;
        if (nc != padded_for) {
          xp = pad_rows(x + nc * d.s_in, g.T * g.H, g.W, g.pad[4], g.pad[5], slack, buf);
          padded_for = nc;
        }
        const float* wk = w + o * d.taps;
        float* yc = y + (n * g.O + o) * d.s_out;
        const float b0 = bias ? bias[o] : 0.f;
        for (int64_t to = 0; to < g.To; to++)
          for (int64_t ho = 0; ho < g.Ho; ho++) {
            int64_t nt = 0;
            for (int64_t kt = 0; kt < g.KT; kt++) {
              const int64_t t = in_row(to, kt, g.st, g.pad[0], g.T);
              if (t < 0) continue;
              for (int64_t kh = 0; kh < g.KH; kh++) {
                const int64_t h = in_row(ho, kh, g.sh, g.pad[2], g.H);
                if (h < 0) continue;
                const float* xr = xp + (t * g.H + h) * d.Wp;
                const float* wr = wk + (kt * g.KH + kh) * g.KW;
                for (int64_t kw = 0; kw < g.KW; kw++, nt++) {
                  ptr[nt] = xr + kw;
                  wv[nt] = wr[kw];
                }
              }
            }
            float* yr = yc + (to * g.Ho + ho) * g.Wo;
            if (g.sw == 1)
              tap_rows<true>(yr, g.Wo, 1, b0, ptr.data(), wv.data(), nt);
            else
              tap_rows<false>(yr, g.Wo, g.sw, b0, ptr.data(), wv.data(), nt);
          }
      }
  }
}

// Unit H and W strides: gx is a correlation of gy, zero-padded by K-1 on each side in H and W, with the kernel
// mirrored in H and W, so it runs through the same plane kernel as the forward pass. A T stride only changes which gy
// planes feed a gx plane; the m gy channels fed by one input channel add up in the same accumulators.
void dw_backward_data_planes(const ConvGeom& g, const float* gy, const float* w, float* gx) {
  const DwDims d(g);
  const int64_t th = g.KH - 1, tw = g.KW - 1;  // padding on each side
  const int64_t P = g.Wo + 2 * tw, plane = (g.Ho + 2 * th) * P;
  const int64_t slack = g.pad[2] * P + g.pad[4] + g.KW + kV + 1;
  const int64_t chan = g.To * plane + slack;  // one padded gy channel in buf
#pragma omp parallel
  {
    std::vector<float> buf, tmp(static_cast<size_t>(g.H * P));
    std::vector<const float*> ptr(d.taps * d.m);
    std::vector<float> wv(d.taps * d.m);
#pragma omp for collapse(2) schedule(static)
    for (int64_t n = 0; n < g.N; n++)
      for (int64_t c = 0; c < g.C; c++) {
        for (int64_t j = 0; j < d.m; j++)
          pad_planes(gy + (n * g.O + c * d.m + j) * d.s_out, g.To, g.Ho, g.Wo, th, th, tw, tw, slack, buf, j * chan);
        float* gxc = gx + (n * g.C + c) * d.s_in;
        for (int64_t t = 0; t < g.T; t++) {
          int64_t nt = 0;
          for (int64_t j = 0; j < d.m; j++) {
            const float* wk = w + (c * d.m + j) * d.taps;
            for (int64_t kt = 0; kt < g.KT; kt++) {
              const int64_t to = out_row(t, kt, g.st, g.pad[0], g.To);
              if (to < 0) continue;
              // gx (h, x) reads gy (h + pad_top - kh, x + pad_left - kw), i.e. padded (h + pad_top - kh + th, ...).
              const float* base = buf.data() + j * chan + to * plane + (g.pad[2] + th) * P + g.pad[4] + tw;
              for (int64_t kh = 0; kh < g.KH; kh++)
                for (int64_t kw = 0; kw < g.KW; kw++, nt++) {
                  ptr[nt] = base - kh * P - kw;
                  wv[nt] = wk[(kt * g.KH + kh) * g.KW + kw];
                }
            }
          }
          tap_rows<true>(tmp.data(), g.H * P, 1, 0.f, ptr.data(), wv.data(), nt);
          for (int64_t h = 0; h < g.H; h++)
            std::memcpy(gxc + (t * g.H + h) * g.W, tmp.data() + h * P, g.W * sizeof(float));
        }
      }
  }
}

// Other strides: scatter every output's contribution into a zeroed, W-padded copy of the channel's gradient.
void dw_backward_data_scatter(const ConvGeom& g, const float* gy, const float* w, float* gx) {
  const DwDims d(g);
#pragma omp parallel
  {
    std::vector<float> buf;
#pragma omp for collapse(2) schedule(static)
    for (int64_t n = 0; n < g.N; n++)
      for (int64_t c = 0; c < g.C; c++) {
        buf.assign(static_cast<size_t>(g.T * g.H * d.Wp), 0.f);
        float* acc = buf.data();
        for (int64_t j = 0; j < d.m; j++) {
          const int64_t o = c * d.m + j;
          const float* gyc = gy + (n * g.O + o) * d.s_out;
          const float* wk = w + o * d.taps;
          for (int64_t to = 0; to < g.To; to++)
            for (int64_t ho = 0; ho < g.Ho; ho++) {
              const float* gyr = gyc + (to * g.Ho + ho) * g.Wo;
              for (int64_t kt = 0; kt < g.KT; kt++) {
                const int64_t t = in_row(to, kt, g.st, g.pad[0], g.T);
                if (t < 0) continue;
                for (int64_t kh = 0; kh < g.KH; kh++) {
                  const int64_t h = in_row(ho, kh, g.sh, g.pad[2], g.H);
                  if (h < 0) continue;
                  float* ar = acc + (t * g.H + h) * d.Wp;
                  const float* wr = wk + (kt * g.KH + kh) * g.KW;
                  for (int64_t kw = 0; kw < g.KW; kw++) {
                    const float wk1 = wr[kw];
                    for (int64_t wo = 0; wo < g.Wo; wo++) ar[wo * g.sw + kw] += wk1 * gyr[wo];
                  }
                }
              }
            }
        }
        float* gxc = gx + (n * g.C + c) * d.s_in;
        for (int64_t r = 0; r < g.T * g.H; r++) std::memcpy(gxc + r * g.W, acc + r * d.Wp + g.pad[4], g.W * sizeof(float));
      }
  }
}

void dw_backward_data(const ConvGeom& g, const float* gy, const float* w, float* gx) {
  if (g.sh == 1 && g.sw == 1)
    dw_backward_data_planes(g, gy, w, gx);
  else
    dw_backward_data_scatter(g, gy, w, gx);
}

// sums[k] = sum_{i < n} a[i] * b[k][i] for k < 8, with n a multiple of 16 (eight independent accumulators, one load
// of `a` per eight loads and FMAs).
void dot8(const float* a, const float* const* b, int64_t n, float* sums) {
  v16f acc[8] = {};
  for (int64_t i = 0; i < n; i += kV) {
    const v16f av = load_v(a + i);
    for (int k = 0; k < 8; k++) acc[k] += av * load_v(b[k] + i);
  }
  for (int k = 0; k < 8; k++) {
    float s = 0;
    for (int64_t l = 0; l < kV; l++) s += acc[k][l];
    sums[k] = s;
  }
}

// Unit H and W strides: with each gy plane laid out at the padded input pitch Wp (zeros in the extra columns and after
// the end), every tap's weight gradient is one long dot product per (n, o, to) between that plane and the padded
// input plane shifted by the tap's offset. The extra columns read real input values but multiply them by exact zeros
// (so they only matter for non-finite inputs).
void dw_backward_weights_planes(const ConvGeom& g, const float* x, const float* gy, float* gw, float* gb) {
  const DwDims d(g);
  const int64_t P = d.Wp, Hp = g.H + g.pad[2] + g.pad[3], plane = Hp * P;
  const int64_t nv = (g.Ho * P + kV - 1) / kV * kV;  // dot length, rounded up to whole vectors
  const int64_t slack = g.KW + kV + 1;
  const int64_t khw = g.KH * g.KW;
#pragma omp parallel
  {
    std::vector<float> xbuf, gyp(static_cast<size_t>(nv));
    std::vector<double> acc(static_cast<size_t>(d.taps));
    std::vector<const float*> ptr(static_cast<size_t>((khw + 7) / 8 * 8));
    float sums[8];
#pragma omp for schedule(static)
    for (int64_t o = 0; o < g.O; o++) {
      std::fill(acc.begin(), acc.end(), 0.0);
      double bsum = 0;
      for (int64_t n = 0; n < g.N; n++) {
        const float* xp = pad_planes(x + (n * g.C + o / d.m) * d.s_in, g.T, g.H, g.W, g.pad[2], g.pad[3], g.pad[4],
                                     g.pad[5], slack, xbuf);
        const float* gyc = gy + (n * g.O + o) * d.s_out;
        for (int64_t to = 0; to < g.To; to++) {
          const float* src = gyc + to * g.Ho * g.Wo;
          std::fill(gyp.begin(), gyp.end(), 0.f);
          for (int64_t ho = 0; ho < g.Ho; ho++) std::memcpy(&gyp[ho * P], src + ho * g.Wo, g.Wo * sizeof(float));
          if (gb) {
            float s = 0;
#pragma omp simd reduction(+ : s)
            for (int64_t i = 0; i < g.Ho * g.Wo; i++) s += src[i];
            bsum += s;
          }
          for (int64_t kt = 0; kt < g.KT; kt++) {
            const int64_t t = in_row(to, kt, g.st, g.pad[0], g.T);
            if (t < 0) continue;
            for (int64_t k = 0; k < khw; k++) ptr[k] = xp + t * plane + (k / g.KW) * P + k % g.KW;
            for (int64_t k = khw; k < static_cast<int64_t>(ptr.size()); k++) ptr[k] = ptr[0];  // padding lanes
            for (int64_t k0 = 0; k0 < khw; k0 += 8) {
              dot8(gyp.data(), ptr.data() + k0, nv, sums);
              for (int64_t k = k0; k < std::min(k0 + 8, khw); k++) acc[kt * khw + k] += sums[k - k0];
            }
          }
        }
      }
      for (int64_t k = 0; k < d.taps; k++) gw[o * d.taps + k] = static_cast<float>(acc[k]);
      if (gb) gb[o] = static_cast<float>(bsum);
    }
  }
}

// Any strides: dot products row by row.
void dw_backward_weights_rows(const ConvGeom& g, const float* x, const float* gy, float* gw, float* gb) {
  const DwDims d(g);
#pragma omp parallel
  {
    std::vector<float> buf;
    std::vector<double> acc(static_cast<size_t>(d.taps));
#pragma omp for schedule(static)
    for (int64_t o = 0; o < g.O; o++) {
      std::fill(acc.begin(), acc.end(), 0.0);
      double bsum = 0;
      for (int64_t n = 0; n < g.N; n++) {
        const float* xp = pad_rows(x + (n * g.C + o / d.m) * d.s_in, g.T * g.H, g.W, g.pad[4], g.pad[5], 0, buf);
        const float* gyc = gy + (n * g.O + o) * d.s_out;
        for (int64_t to = 0; to < g.To; to++)
          for (int64_t ho = 0; ho < g.Ho; ho++) {
            const float* __restrict gyr = gyc + (to * g.Ho + ho) * g.Wo;
            if (gb) {
              float s = 0;
#pragma omp simd reduction(+ : s)
              for (int64_t wo = 0; wo < g.Wo; wo++) s += gyr[wo];
              bsum += s;
            }
            for (int64_t kt = 0; kt < g.KT; kt++) {
              const int64_t t = in_row(to, kt, g.st, g.pad[0], g.T);
              if (t < 0) continue;
              for (int64_t kh = 0; kh < g.KH; kh++) {
                const int64_t h = in_row(ho, kh, g.sh, g.pad[2], g.H);
                if (h < 0) continue;
                const float* xr = xp + (t * g.H + h) * d.Wp;
                double* ar = acc.data() + (kt * g.KH + kh) * g.KW;
                for (int64_t kw = 0; kw < g.KW; kw++) {
                  const float* __restrict xk = xr + kw;
                  float s = 0;
                  if (g.sw == 1) {
#pragma omp simd reduction(+ : s)
                    for (int64_t wo = 0; wo < g.Wo; wo++) s += gyr[wo] * xk[wo];
                  } else {
                    for (int64_t wo = 0; wo < g.Wo; wo++) s += gyr[wo] * xk[wo * g.sw];
                  }
                  ar[kw] += s;
                }
              }
            }
          }
      }
      for (int64_t k = 0; k < d.taps; k++) gw[o * d.taps + k] = static_cast<float>(acc[k]);
      if (gb) gb[o] = static_cast<float>(bsum);
    }
  }
}

// ---------------------------------------------------------------------------------------------------------------------
// conv3d: entry points. Problems with an empty channel or batch dimension never reach oneDNN (it rejects some of them);
// their results are written directly.
// ---------------------------------------------------------------------------------------------------------------------

napi_value conv3d_forward_impl(napi_env env, napi_callback_info info) {
  return dcvg::guarded(env, [&]() -> napi_value {
    const char* fn = "conv3dForward";
    Args a(env, info, 10, fn);
    const ConvGeom g = parse_conv(a, fn);
    const F32 x = a.f32(6, "x"), w = a.f32(7, "w"), bias = a.f32_or_null(8, "bias"), y = a.f32(9, "y");
    need_len(x, g.x_len, "x", fn);
    need_len(w, g.w_len, "w", fn);
    if (!bias.null) need_len(bias, g.O, "bias", fn);
    need_len(y, g.y_len, "y", fn);

    if (g.y_len == 0) return nullptr;
    if (g.C == 0) {  // sum over no input channels: y = bias
      const size_t per = static_cast<size_t>(g.To * g.Ho * g.Wo);
      for (int64_t n = 0; n < g.N; n++)
        for (int64_t o = 0; o < g.O; o++)
          std::fill_n(y.data + (n * g.O + o) * per, per, bias.null ? 0.f : bias.data[o]);
      return nullptr;
    }
    if (is_depthwise(g) && g.sh == 1 && g.sw == 1)
      dw_forward_planes(g, x.data, w.data, bias.null ? nullptr : bias.data, y.data);
    else if (is_depthwise(g))
      dw_forward_rows(g, x.data, w.data, bias.null ? nullptr : bias.data, y.data);
    else
      run_conv(ConvKind::Fwd, g, x.data, w.data, y.data, bias.null ? nullptr : bias.data);
    return nullptr;
  });
}

napi_value conv3d_backward_data_impl(napi_env env, napi_callback_info info) {
  return dcvg::guarded(env, [&]() -> napi_value {
    const char* fn = "conv3dBackwardData";
    Args a(env, info, 9, fn);
    const ConvGeom g = parse_conv(a, fn);
    const F32 gy = a.f32(6, "gy"), w = a.f32(7, "w"), gx = a.f32(8, "gx");
    need_len(gy, g.y_len, "gy", fn);
    need_len(w, g.w_len, "w", fn);
    need_len(gx, g.x_len, "gx", fn);

    if (g.x_len == 0) return nullptr;
    if (g.O == 0) {  // no outputs depend on x
      std::fill_n(gx.data, g.x_len, 0.f);
      return nullptr;
    }
    if (is_depthwise(g))
      dw_backward_data(g, gy.data, w.data, gx.data);
    else
      run_conv(ConvKind::BwdData, g, gx.data, w.data, gy.data, nullptr);
    return nullptr;
  });
}

napi_value conv3d_backward_weights_impl(napi_env env, napi_callback_info info) {
  return dcvg::guarded(env, [&]() -> napi_value {
    const char* fn = "conv3dBackwardWeights";
    Args a(env, info, 10, fn);
    const ConvGeom g = parse_conv(a, fn);
    const F32 x = a.f32(6, "x"), gy = a.f32(7, "gy"), gw = a.f32(8, "gw"), gb = a.f32_or_null(9, "gb");
    need_len(x, g.x_len, "x", fn);
    need_len(gy, g.y_len, "gy", fn);
    need_len(gw, g.w_len, "gw", fn);
    if (!gb.null) need_len(gb, g.O, "gb", fn);

    if (g.O == 0) return nullptr;
    if (g.N == 0 || g.C == 0) {  // gw has no contributions (or no entries); gb is still the sum of gy
      std::fill_n(gw.data, g.w_len, 0.f);
      if (!gb.null) {
        const size_t per = static_cast<size_t>(g.To * g.Ho * g.Wo);
        for (int64_t o = 0; o < g.O; o++) {
          double s = 0;
          for (int64_t n = 0; n < g.N; n++) {
            const float* p = gy.data + (n * g.O + o) * per;
            for (size_t i = 0; i < per; i++) s += p[i];
          }
          gb.data[o] = static_cast<float>(s);
        }
      }
      return nullptr;
    }
    if (is_depthwise(g) && g.sh == 1 && g.sw == 1)
      dw_backward_weights_planes(g, x.data, gy.data, gw.data, gb.null ? nullptr : gb.data);
    else if (is_depthwise(g))
      dw_backward_weights_rows(g, x.data, gy.data, gw.data, gb.null ? nullptr : gb.data);
    else
      run_conv(ConvKind::BwdWeights, g, x.data, gw.data, gy.data, gb.null ? nullptr : gb.data);
    return nullptr;
  });
}

// ---------------------------------------------------------------------------------------------------------------------
// peakGflops
// ---------------------------------------------------------------------------------------------------------------------

constexpr int kChains = 12;  // independent FMA chains: covers 4-cycle latency x 2 pipes with room to spare

// Runs `iters` rounds of kChains dependent 8-lane FMAs. a*x+b with a just below 1 converges to a finite fixed point, so
// no denormals or infinities slow it down. Returns a value derived from the accumulators so the work is not elided.
__attribute__((target("avx2,fma"), noinline)) float fma_block(int64_t iters, float seed) {
  __m256 acc[kChains];
  for (int i = 0; i < kChains; i++) acc[i] = _mm256_set1_ps(seed + 0.01f * i);
  const __m256 mul = _mm256_set1_ps(0.999999f), add = _mm256_set1_ps(1e-6f);
  for (int64_t it = 0; it < iters; it++) {
    for (int i = 0; i < kChains; i++) acc[i] = _mm256_fmadd_ps(acc[i], mul, add);
  }
  __m256 s = acc[0];
  for (int i = 1; i < kChains; i++) s = _mm256_add_ps(s, acc[i]);
  alignas(32) float out[8];
  _mm256_store_ps(out, s);
  return out[0] + out[7];
}

// The same probe with 16-lane AVX-512 FMAs: the true fp32 ceiling on CPUs that have it (our own kernels and oneDNN use
// AVX-512 where available, so percentages of the AVX2 ceiling can exceed 100%).
__attribute__((target("avx512f"), noinline)) float fma_block512(int64_t iters, float seed) {
  __m512 acc[kChains];
  for (int i = 0; i < kChains; i++) acc[i] = _mm512_set1_ps(seed + 0.01f * i);
  const __m512 mul = _mm512_set1_ps(0.999999f), add = _mm512_set1_ps(1e-6f);
  for (int64_t it = 0; it < iters; it++) {
    for (int i = 0; i < kChains; i++) acc[i] = _mm512_fmadd_ps(acc[i], mul, add);
  }
  __m512 s = acc[0];
  for (int i = 1; i < kChains; i++) s = _mm512_add_ps(s, acc[i]);
  alignas(64) float out[16];
  _mm512_store_ps(out, s);
  return out[0] + out[15];
}

static napi_value peak_impl(napi_env env, napi_callback_info info, bool avx512) {
  return dcvg::guarded(env, [&]() -> napi_value {
    const char* fn = avx512 ? "peakGflopsAvx512" : "peakGflops";
    Args a(env, info, 2, fn);
    const int64_t threads = a.i64(0, "threads", 1);
    const double seconds = a.f64(1, "seconds");
    if (threads > 1024) range_error(std::string(fn) + ": 'threads' must be <= 1024");
    if (!(seconds > 0) || seconds > 60) range_error(std::string(fn) + ": 'seconds' must be in (0, 60]");
    if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma"))
      throw std::runtime_error("peakGflops: this CPU lacks AVX2/FMA");
    if (avx512 && !__builtin_cpu_supports("avx512f")) return dcvg::make_number(env, std::nan(""));
    auto block = [&](int64_t iters, float seed) { return avx512 ? fma_block512(iters, seed) : fma_block(iters, seed); };

    using clock = std::chrono::steady_clock;
    constexpr int64_t kIters = 1 << 16;  // ~0.1-0.3 ms per block: fine-grained enough to stop on time
    const double flops_per_block = double(kIters) * kChains * (avx512 ? 16 : 8) * 2;
    block(kIters, 1.f);  // wake the core up before timing
    std::atomic<int64_t> blocks{0};
    std::atomic<float> sink{0};
    const auto t0 = clock::now();
    const auto deadline = t0 + std::chrono::duration_cast<clock::duration>(std::chrono::duration<double>(seconds));
#pragma omp parallel num_threads(static_cast<int>(threads))
    {
      int64_t mine = 0;
      float s = 0;
      do {
        s += block(kIters, 1.f + mine);
        mine++;
      } while (clock::now() < deadline);
      blocks += mine;
      sink = sink + s;
    }
    const double elapsed = std::chrono::duration<double>(clock::now() - t0).count();
    return dcvg::make_number(env, double(blocks.load()) * flops_per_block / elapsed / 1e9);
  });
}

napi_value peak_gflops_impl(napi_env env, napi_callback_info info) { return peak_impl(env, info, false); }
napi_value peak_gflops512_impl(napi_env env, napi_callback_info info) { return peak_impl(env, info, true); }

// ---------------------------------------------------------------------------------------------------------------------
// Threads and versions
// ---------------------------------------------------------------------------------------------------------------------

napi_value set_num_threads_impl(napi_env env, napi_callback_info info) {
  return dcvg::guarded(env, [&]() -> napi_value {
    Args a(env, info, 1, "setNumThreads");
    const int64_t n = a.i64(0, "n", 1);
    if (n > 4096) range_error("setNumThreads: 'n' must be <= 4096");
    omp_set_num_threads(static_cast<int>(n));
    openblas_set_num_threads(static_cast<int>(n));
    block_signals_in_workers();
    return nullptr;
  });
}

napi_value set_gemm_path_impl(napi_env env, napi_callback_info info) {
  return dcvg::guarded(env, [&]() -> napi_value {
    Args a(env, info, 1, "setGemmPath");
    const std::string p = a.str(0, "path");
    if (p == "onednn")
      g_gemm_path = kGemmOneDnn;
    else if (p == "openblas")
      g_gemm_path = kGemmOpenBlas;
    else if (p == "auto")
      g_gemm_path = gemm_auto_path();
    else
      range_error("setGemmPath: 'path' must be \"onednn\", \"openblas\" or \"auto\", got \"" + p + "\"");
    return nullptr;
  });
}

napi_value get_num_threads_impl(napi_env env, napi_callback_info info) {
  return dcvg::guarded(env, [&]() -> napi_value {
    Args a(env, info, 0, "getNumThreads");
    return dcvg::make_number(env, omp_get_max_threads());
  });
}

// The widest vector ISA this translation unit was compiled for; every kernel file is built with the same -march.
const char* compiled_simd() {
#if defined(__AVX512F__)
  return "avx512";
#elif defined(__AVX2__) && defined(__FMA__)
  return "avx2";
#elif defined(__AVX__)
  return "avx";
#else
  return "sse";
#endif
}

const char* dnnl_isa_name(dnnl_cpu_isa_t isa) {
  switch (isa) {
    case dnnl_cpu_isa_sse41: return "sse41";
    case dnnl_cpu_isa_avx: return "avx";
    case dnnl_cpu_isa_avx2: return "avx2";
    case dnnl_cpu_isa_avx2_vnni: return "avx2_vnni";
    case dnnl_cpu_isa_avx512_mic: return "avx512_mic";
    case dnnl_cpu_isa_avx512_mic_4ops: return "avx512_mic_4ops";
    case dnnl_cpu_isa_avx512_core: return "avx512_core";
    case dnnl_cpu_isa_avx512_core_vnni: return "avx512_core_vnni";
    case dnnl_cpu_isa_avx512_core_bf16: return "avx512_core_bf16";
    case dnnl_cpu_isa_avx512_core_amx: return "avx512_core_amx";
    case dnnl_cpu_isa_all: return "all";
    default: return "other";
  }
}

napi_value versions_impl(napi_env env, napi_callback_info info) {
  return dcvg::guarded(env, [&]() -> napi_value {
    Args a(env, info, 0, "versions");
    const dnnl_version_t* v = dnnl_version();
    const std::string dnnl = std::to_string(v->major) + "." + std::to_string(v->minor) + "." + std::to_string(v->patch);
    const char* ob = openblas_get_config();
    napi_value obj, s1, s2;
    napi_create_object(env, &obj);
    napi_create_string_utf8(env, dnnl.c_str(), NAPI_AUTO_LENGTH, &s1);
    napi_create_string_utf8(env, ob ? ob : "unknown", NAPI_AUTO_LENGTH, &s2);
    napi_set_named_property(env, obj, "dnnl", s1);
    napi_set_named_property(env, obj, "openblas", s2);
    // Which instruction sets actually run: our own kernels' (fixed when the addon was compiled, see DCVG_MARCH in
    // scripts/build-native.mjs), oneDNN's and OpenBLAS's (both chosen at run time, capped by ONEDNN_MAX_CPU_ISA and
    // OPENBLAS_CORETYPE). scripts/test-avx2.sh checks all three before it trusts a run as "AVX2-only".
    const char* core = openblas_get_corename();
    napi_value s3, s4, s5;
    napi_create_string_utf8(env, compiled_simd(), NAPI_AUTO_LENGTH, &s3);
    napi_create_string_utf8(env, dnnl_isa_name(dnnl_get_effective_cpu_isa()), NAPI_AUTO_LENGTH, &s4);
    napi_create_string_utf8(env, core ? core : "unknown", NAPI_AUTO_LENGTH, &s5);
    napi_set_named_property(env, obj, "simd", s3);
    napi_set_named_property(env, obj, "dnnlIsa", s4);
    napi_set_named_property(env, obj, "openblasCore", s5);
    // The GEMM path in use and the one the CPU table picks here (they differ only after setGemmPath / DCVG_GEMM).
    napi_value s6, s7;
    napi_create_string_utf8(env, gemm_path_name(gemm_path()), NAPI_AUTO_LENGTH, &s6);
    napi_create_string_utf8(env, gemm_path_name(gemm_auto_path()), NAPI_AUTO_LENGTH, &s7);
    napi_set_named_property(env, obj, "gemmPath", s6);
    napi_set_named_property(env, obj, "gemmAuto", s7);
    return obj;
  });
}

}  // namespace

void register_blas_conv(napi_env env, napi_value exports) {
  block_signals_in_workers();
  dcvg::export_fn(env, exports, "gemm", gemm_impl);
  dcvg::export_fn(env, exports, "conv3dForward", conv3d_forward_impl);
  dcvg::export_fn(env, exports, "conv3dBackwardData", conv3d_backward_data_impl);
  dcvg::export_fn(env, exports, "conv3dBackwardWeights", conv3d_backward_weights_impl);
  dcvg::export_fn(env, exports, "peakGflops", peak_gflops_impl);
  dcvg::export_fn(env, exports, "peakGflopsAvx512", peak_gflops512_impl);
  dcvg::export_fn(env, exports, "setNumThreads", set_num_threads_impl);
  dcvg::export_fn(env, exports, "getNumThreads", get_num_threads_impl);
  dcvg::export_fn(env, exports, "setGemmPath", set_gemm_path_impl);
  dcvg::export_fn(env, exports, "versions", versions_impl);
}
