#!/usr/bin/env bash
# Runs test files as an AVX2-only x86-64 CPU (Haswell .. Zen 3) would, on any machine that has AVX2, AVX-512 or not.
#
#   scripts/test-avx2.sh                        the numeric suites (the list below)
#   scripts/test-avx2.sh dist/test/wan.test.js  just those files (node --test arguments)
#
# Three things pick instructions, and each is capped here:
#   our kernels (native/src)   fixed at compile time by -march: an addon built with DCVG_MARCH=x86-64-v3 (AVX2+FMA,
#                              no AVX-512) in its own folder, native/build-x86-64-v3/; the default build in
#                              native/build/ is not touched, so nothing needs restoring afterwards
#   oneDNN (GEMM, convolution) chosen at run time: ONEDNN_MAX_CPU_ISA=AVX2 (DNNL_ spelling too, for older oneDNN)
#   OpenBLAS                   chosen at run time: OPENBLAS_CORETYPE=Haswell
# (which of the two runs `gemm` is then the CPU table's AVX2 row, or DCVG_GEMM=onednn|openblas; gemm_paths.test runs
# both either way)
# and the addon is loaded through DCVG_NATIVE_ADDON, which refuses to fall back to another build. Before running
# anything the script asks the addon what it actually uses (dcvg env) and stops unless all three say AVX2.
# DCVG_AVX2_NO_BUILD=1 skips rebuilding the addon and the TypeScript when both are already there.
set -euo pipefail
cd "$(dirname "$0")/.."

# The emulation needs a CPU that has what it emulates; on one without (or not x86-64) there is nothing to run.
if [ "$(uname -m)" != x86_64 ] || ! grep -qw avx2 /proc/cpuinfo || ! grep -qw fma /proc/cpuinfo; then
  echo "test-avx2: skipped: this CPU is not an x86-64 with AVX2 and FMA"
  exit 0
fi

march=x86-64-v3
addon="native/build-$march/build/Release/dcvg_native.node"
if [ "${DCVG_AVX2_NO_BUILD:-}" != 1 ] || [ ! -f "$addon" ]; then
  DCVG_MARCH=$march node scripts/build-native.mjs >/dev/null
fi
if [ "${DCVG_AVX2_NO_BUILD:-}" != 1 ] || [ ! -d dist/test ]; then
  npx tsc -p tsconfig.json
fi

export DCVG_NATIVE_ADDON="$addon"
export ONEDNN_MAX_CPU_ISA=AVX2 DNNL_MAX_CPU_ISA=AVX2 OPENBLAS_CORETYPE=Haswell

isa=$(node dist/src/cli/main.js env --json | node -e '
  const n = JSON.parse(require("fs").readFileSync(0, "utf8")).native;
  process.stdout.write(`${n.simd} ${n.dnnlIsa} ${n.openblasCore} ${n.gemmPath ?? "onednn"}`);')
read -r simd dnnl_isa ob_core gemm_path <<<"$isa"
echo "test-avx2: kernels $simd, oneDNN $dnnl_isa, OpenBLAS $ob_core, GEMM path $gemm_path (DCVG_GEMM overrides)"
if [ "$simd" != avx2 ] || [ "$dnnl_isa" != avx2 ] || [ "$ob_core" != Haswell ]; then
  echo "test-avx2: this is not an AVX2-only configuration (this CPU may lack AVX2/FMA); nothing run" >&2
  exit 1
fi

if [ $# -eq 0 ]; then
  # Every suite that compares floats against a tolerance.
  set -- dist/test/ops_fixtures.test.js dist/test/native_vs_reference.test.js dist/test/gradcheck.test.js \
    dist/test/tensor.test.js dist/test/dcaev.test.js dist/test/tiling.test.js dist/test/init_ae_linear.test.js \
    dist/test/train_ae.test.js dist/test/train_losses.test.js dist/test/default_model.test.js \
    dist/test/metrics.test.js dist/test/baseline.test.js dist/test/wan.test.js dist/test/wan_train.test.js \
    dist/test/diffusion.test.js dist/test/train_ae_torch.test.js dist/test/gemm_paths.test.js
fi
case " $* " in
  *" --test-reporter"*) exec node --test "$@" ;;
  *) exec node --test --test-reporter=spec "$@" ;;
esac
