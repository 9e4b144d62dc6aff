// Per-frame reconstruction metrics on uint8 RGB (src/metrics/metrics.ts is the reference; src/metrics/native_metrics.ts
// the wrapper): sum of squared differences (PSNR), SSIM with a separable Gaussian window, reflect or crop borders, and
// the temporal error sum |e_t - e_{t-1}|.
//
// Bit-identical to the reference, by construction: every value is computed in double with the same operations in the
// same order as metrics.ts (the Gaussian taps and constants come from JS), loops are only restructured across
// independent elements, reductions run serially in the reference's order, and floating-point contraction (FMA) is
// switched off for this file, since V8 never fuses a multiply and an add. The integer sums are exact in int64.
//
//   metricsFrames(orig, recon, prevOrig|null, prevRecon|null, frames, H, W, taps, c1, c2, crop, ssim, threads)
//     -> Float64Array(3 * frames): [ssd, ssim (NaN if !ssim), temporalSum (NaN without a previous frame)] per frame
//   metricsFramesAsync(same arguments) -> Promise<Float64Array>, computed on a libuv worker thread on private copies
//     of the frames (the caller's buffers are not touched after the call returns).
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "napi_util.h"

namespace {

using dcvg::range_error;
using dcvg::type_error;

struct Job {
  int64_t frames = 0, H = 0, W = 0;
  std::vector<uint8_t> orig, recon, prevOrig, prevRecon;  // async: private copies
  const uint8_t* o = nullptr;                              // the frames read (copies or the caller's arrays)
  const uint8_t* r = nullptr;
  const uint8_t* po = nullptr;  // previous frame, or null
  const uint8_t* pr = nullptr;
  std::vector<double> taps;
  double c1 = 0, c2 = 0;
  bool crop = false, ssim = true;
  int threads = 0;
  std::vector<double> out;
  std::string error;
};

struct U8 {
  const uint8_t* data = nullptr;
  size_t length = 0;
  bool null = false;
};

U8 u8_arg(napi_env env, napi_value v, const char* name, bool nullable) {
  U8 r;
  napi_valuetype t;
  napi_typeof(env, v, &t);
  if (nullable && (t == napi_null || t == napi_undefined)) {
    r.null = true;
    return r;
  }
  bool is_ta = false;
  napi_is_typedarray(env, v, &is_ta);
  if (!is_ta) type_error(std::string("metricsFrames: argument '") + name + "' must be a Uint8Array" + (nullable ? " or null" : ""));
  napi_typedarray_type tt;
  size_t len;
  void* data;
  napi_value ab;
  size_t off;
  napi_get_typedarray_info(env, v, &tt, &len, &data, &ab, &off);
  if (tt != napi_uint8_array) type_error(std::string("metricsFrames: argument '") + name + "' must be a Uint8Array (wrong element type)");
  r.data = static_cast<const uint8_t*>(data);
  r.length = len;
  return r;
}

// Parses and validates all 13 arguments; with `copy` the frames are copied into the job.
std::unique_ptr<Job> parse(napi_env env, napi_callback_info info, bool copy) {
  dcvg::Args a(env, info, 13, "metricsFrames");
  napi_value argv[13];
  size_t argc = 13;
  napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr);
  auto job = std::make_unique<Job>();
  U8 o = u8_arg(env, argv[0], "orig", false);
  U8 r = u8_arg(env, argv[1], "recon", false);
  U8 po = u8_arg(env, argv[2], "prevOrig", true);
  U8 pr = u8_arg(env, argv[3], "prevRecon", true);
  job->frames = a.i64(4, "frames", 1);
  job->H = a.i64(5, "height", 1);
  job->W = a.i64(6, "width", 1);
  // taps: a Float64Array of odd length 2r+1
  {
    bool is_ta = false;
    napi_is_typedarray(env, argv[7], &is_ta);
    if (!is_ta) type_error("metricsFrames: argument 'taps' must be a Float64Array");
    napi_typedarray_type tt;
    size_t len;
    void* data;
    napi_value ab;
    size_t off;
    napi_get_typedarray_info(env, argv[7], &tt, &len, &data, &ab, &off);
    if (tt != napi_float64_array) type_error("metricsFrames: argument 'taps' must be a Float64Array (wrong element type)");
    if (len % 2 != 1 || len > 255) range_error("metricsFrames: argument 'taps' must have an odd length up to 255, got " + std::to_string(len));
    const double* d = static_cast<const double*>(data);
    for (size_t i = 0; i < len; i++)
      if (!std::isfinite(d[i])) range_error("metricsFrames: argument 'taps' must be finite");
    job->taps.assign(d, d + len);
  }
  job->c1 = a.f64(8, "c1");
  job->c2 = a.f64(9, "c2");
  job->crop = a.boolean(10, "crop");
  job->ssim = a.boolean(11, "ssim");
  const int64_t threads = a.i64(12, "threads", 0);
  if (threads > 256) range_error("metricsFrames: argument 'threads' must be <= 256, got " + std::to_string(threads));
  job->threads = static_cast<int>(threads);

  const int64_t H = job->H, W = job->W, F = job->frames;
  const int64_t lim = std::numeric_limits<int32_t>::max();
  if (H > lim || W > lim || F > lim || H * W > (int64_t(1) << 40) / 3)
    range_error("metricsFrames: frame size " + std::to_string(H) + "x" + std::to_string(W) + " is too large");
  const uint64_t fb = static_cast<uint64_t>(H) * static_cast<uint64_t>(W) * 3;
  if (static_cast<uint64_t>(F) > std::numeric_limits<uint64_t>::max() / fb) range_error("metricsFrames: size overflow");
  const uint64_t need = fb * static_cast<uint64_t>(F);
  if (o.length != need)
    range_error("metricsFrames: 'orig' has " + std::to_string(o.length) + " bytes, expected " + std::to_string(F) + " frames of " +
                std::to_string(H) + "x" + std::to_string(W) + "x3 = " + std::to_string(need));
  if (r.length != need)
    range_error("metricsFrames: 'recon' has " + std::to_string(r.length) + " bytes, expected " + std::to_string(need));
  if (po.null != pr.null) type_error("metricsFrames: 'prevOrig' and 'prevRecon' must both be Uint8Arrays or both null");
  if (!po.null && (po.length != fb || pr.length != fb))
    range_error("metricsFrames: previous frames have " + std::to_string(po.length) + " and " + std::to_string(pr.length) +
                " bytes, expected " + std::to_string(fb));
  const int64_t rad = static_cast<int64_t>(job->taps.size() / 2);
  if (job->ssim) {
    if (!job->crop && (H <= rad || W <= rad))
      range_error("metricsFrames: frame " + std::to_string(H) + "x" + std::to_string(W) + " is too small for reflect padding by " +
                  std::to_string(rad));
    if (job->crop && (H <= 2 * rad || W <= 2 * rad))
      range_error("metricsFrames: frame " + std::to_string(H) + "x" + std::to_string(W) + " has no window inside for cropping");
  }
  if (copy) {
    job->orig.assign(o.data, o.data + need);
    job->recon.assign(r.data, r.data + need);
    job->o = job->orig.data();
    job->r = job->recon.data();
    if (!po.null) {
      job->prevOrig.assign(po.data, po.data + fb);
      job->prevRecon.assign(pr.data, pr.data + fb);
      job->po = job->prevOrig.data();
      job->pr = job->prevRecon.data();
    }
  } else {
    job->o = o.data;
    job->r = r.data;
    job->po = po.null ? nullptr : po.data;
    job->pr = pr.null ? nullptr : pr.data;
  }
  job->out.assign(static_cast<size_t>(3 * F), std::numeric_limits<double>::quiet_NaN());
  return job;
}

inline int64_t reflect(int64_t i, int64_t n) { return i < 0 ? -i : (i >= n ? 2 * (n - 1) - i : i); }

// Mean SSIM map of channel c of one frame pair, exactly as SsimComputer.channelMean: horizontal pass per row (held in
// a ring of 2r+1 rows instead of whole planes), vertical pass per output row, serial sum in row-major order.
double ssim_channel(const uint8_t* xs, const uint8_t* ys, int64_t H, int64_t W, int c, const std::vector<double>& g, double c1,
                    double c2, bool crop) {
  const int64_t r = static_cast<int64_t>(g.size() / 2);
  const int64_t R = 2 * r + 1;
  const int64_t pw = W + 2 * r;
  const double gc = g[r];
  std::vector<double> pad(5 * pw), ring(5 * R * W), acc(5 * W);
  double *px = pad.data(), *py = px + pw, *pxx = py + pw, *pyy = pxx + pw, *pxy = pyy + pw;
  auto hrow = [&](int64_t i) {  // horizontally filtered row i -> ring slot i % R
    const uint8_t* xr = xs + i * W * 3 + c;
    const uint8_t* yr = ys + i * W * 3 + c;
    for (int64_t j = -r; j < W + r; j++) {
      const int64_t jj = reflect(j, W);
      const double x = xr[jj * 3], y = yr[jj * 3];
      const int64_t p = j + r;
      px[p] = x;
      py[p] = y;
      pxx[p] = x * x;
      pyy[p] = y * y;
      pxy[p] = x * y;
    }
    double* base = ring.data() + (i % R) * 5 * W;
    double *hx = base, *hy = hx + W, *hxx = hy + W, *hyy = hxx + W, *hxy = hyy + W;
    for (int64_t j = 0; j < W; j++) {
      hx[j] = gc * px[j + r];
      hy[j] = gc * py[j + r];
      hxx[j] = gc * pxx[j + r];
      hyy[j] = gc * pyy[j + r];
      hxy[j] = gc * pxy[j + r];
    }
    for (int64_t k = 1; k <= r; k++) {
      const double w = g[r - k];
      for (int64_t j = 0; j < W; j++) {
        const int64_t m = j + r;
        hx[j] += w * (px[m - k] + px[m + k]);
        hy[j] += w * (py[m - k] + py[m + k]);
        hxx[j] += w * (pxx[m - k] + pxx[m + k]);
        hyy[j] += w * (pyy[m - k] + pyy[m + k]);
        hxy[j] += w * (pxy[m - k] + pxy[m + k]);
      }
    }
  };
  auto slot = [&](int64_t i, int q) { return ring.data() + (i % R) * 5 * W + q * W; };
  const int64_t i0 = crop ? r : 0, i1 = crop ? H - r : H, j0 = crop ? r : 0, j1 = crop ? W - r : W;
  int64_t done = 0;  // rows 0..done-1 have been filtered horizontally
  double* a[5];
  for (int q = 0; q < 5; q++) a[q] = acc.data() + q * W;
  double sum = 0;
  for (int64_t i = i0; i < i1; i++) {
    for (; done <= std::min(H - 1, i + r); done++) hrow(done);
    for (int q = 0; q < 5; q++) {
      const double* h = slot(i, q);
      double* aq = a[q];
      for (int64_t j = j0; j < j1; j++) aq[j] = gc * h[j];
    }
    for (int64_t k = 1; k <= r; k++) {
      const double w = g[r - k];
      const int64_t ia = reflect(i - k, H), ib = reflect(i + k, H);
      for (int q = 0; q < 5; q++) {
        const double* ha = slot(ia, q);
        const double* hb = slot(ib, q);
        double* aq = a[q];
        for (int64_t j = j0; j < j1; j++) aq[j] += w * (ha[j] + hb[j]);
      }
    }
    const double *ax = a[0], *ay = a[1], *axx = a[2], *ayy = a[3], *axy = a[4];
    for (int64_t j = j0; j < j1; j++) {
      const double mx = ax[j], my = ay[j];
      const double mxx = mx * mx, myy = my * my, mxy = mx * my;
      const double vx = std::max(axx[j] - mxx, 0.0);
      const double vy = std::max(ayy[j] - myy, 0.0);
      const double cxy = axy[j] - mxy;
      sum += ((2 * mxy + c1) * (2 * cxy + c2)) / ((mxx + myy + c1) * (vx + vy + c2));
    }
  }
  return sum / static_cast<double>((i1 - i0) * (j1 - j0));
}

void run(Job& job) {
  const int64_t F = job.frames, H = job.H, W = job.W;
  const int64_t fb = H * W * 3;
  const int64_t tasks = F * (job.ssim ? 4 : 1);  // per frame: the integer sums, then the three SSIM channels
  std::vector<double> chan(static_cast<size_t>(F * 3), 0.0);
  const int nt = job.threads > 0 ? job.threads : omp_get_max_threads();
#pragma omp parallel for schedule(dynamic, 1) num_threads(nt) if (nt > 1 && tasks > 1)
  for (int64_t task = 0; task < tasks; task++) {
    const int64_t t = task % F;
    const int64_t kind = task / F;  // 0: sums, 1..3: SSIM channel kind-1
    const uint8_t* o = job.o + t * fb;
    const uint8_t* r = job.r + t * fb;
    if (kind == 0) {
      int64_t ssd = 0;
      for (int64_t i = 0; i < fb; i++) {
        const int64_t d = int64_t(o[i]) - int64_t(r[i]);
        ssd += d * d;
      }
      job.out[3 * t] = static_cast<double>(ssd);
      const uint8_t* po = t > 0 ? o - fb : job.po;
      const uint8_t* pr = t > 0 ? r - fb : job.pr;
      if (po) {
        int64_t s = 0;
        for (int64_t i = 0; i < fb; i++) {
          const int64_t d = int64_t(r[i]) - int64_t(pr[i]) - (int64_t(o[i]) - int64_t(po[i]));
          s += d < 0 ? -d : d;
        }
        job.out[3 * t + 2] = static_cast<double>(s);
      }
    } else {
      chan[3 * t + (kind - 1)] = ssim_channel(o, r, H, W, static_cast<int>(kind - 1), job.taps, job.c1, job.c2, job.crop);
    }
  }
  if (job.ssim)
    for (int64_t t = 0; t < F; t++) {
      double total = 0;
      for (int c = 0; c < 3; c++) total += chan[3 * t + c];
      job.out[3 * t + 1] = total / 3;
    }
}

napi_value to_f64_array(napi_env env, const std::vector<double>& v) {
  napi_value ab, arr;
  void* data;
  napi_create_arraybuffer(env, v.size() * sizeof(double), &data, &ab);
  std::memcpy(data, v.data(), v.size() * sizeof(double));
  napi_create_typedarray(env, napi_float64_array, v.size(), ab, 0, &arr);
  return arr;
}

napi_value MetricsFrames(napi_env env, napi_callback_info info) {
  return dcvg::guarded(env, [&]() -> napi_value {
    auto job = parse(env, info, false);
    run(*job);
    return to_f64_array(env, job->out);
  });
}

struct AsyncJob {
  std::unique_ptr<Job> job;
  napi_deferred deferred = nullptr;
  napi_async_work work = nullptr;
};

void async_execute(napi_env, void* data) {
  auto* aj = static_cast<AsyncJob*>(data);
  try {
    run(*aj->job);
  } catch (const std::exception& e) {
    aj->job->error = e.what();
  }
}

void async_complete(napi_env env, napi_status status, void* data) {
  std::unique_ptr<AsyncJob> aj(static_cast<AsyncJob*>(data));
  if (status != napi_ok || !aj->job->error.empty()) {
    napi_value msg, err;
    std::string m = "metricsFramesAsync: " + (aj->job->error.empty() ? std::string("cancelled") : aj->job->error);
    napi_create_string_utf8(env, m.c_str(), NAPI_AUTO_LENGTH, &msg);
    napi_create_error(env, nullptr, msg, &err);
    napi_reject_deferred(env, aj->deferred, err);
  } else {
    napi_resolve_deferred(env, aj->deferred, to_f64_array(env, aj->job->out));
  }
  napi_delete_async_work(env, aj->work);
}

napi_value MetricsFramesAsync(napi_env env, napi_callback_info info) {
  return dcvg::guarded(env, [&]() -> napi_value {
    auto aj = std::make_unique<AsyncJob>();
    aj->job = parse(env, info, true);  // validated and copied before anything is queued
    napi_value promise, name;
    if (napi_create_promise(env, &aj->deferred, &promise) != napi_ok) throw std::runtime_error("cannot create a promise");
    napi_create_string_utf8(env, "dcvg.metricsFrames", NAPI_AUTO_LENGTH, &name);
    if (napi_create_async_work(env, nullptr, name, async_execute, async_complete, aj.get(), &aj->work) != napi_ok)
      throw std::runtime_error("cannot create async work");
    if (napi_queue_async_work(env, aj->work) != napi_ok) {
      napi_delete_async_work(env, aj->work);
      throw std::runtime_error("cannot queue async work");
    }
    aj.release();  // owned by async_complete now
    return promise;
  });
}

}  // namespace

void register_metrics(napi_env env, napi_value exports) {
  dcvg::export_fn(env, exports, "metricsFrames", MetricsFrames);
  dcvg::export_fn(env, exports, "metricsFramesAsync", MetricsFramesAsync);
}
