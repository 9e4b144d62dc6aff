#!/usr/bin/env bash
# Sets up a fresh Debian/Ubuntu machine: system libraries for the native backend (and PyTorch for the side-by-side
# benchmarks), npm dependencies, and the native build.
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
if command -v apt-get >/dev/null; then
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends libopenblas-dev libdnnl-dev g++ make python3 ffmpeg python3-torch >/dev/null
else
  echo "setup.sh: apt-get not found; install OpenBLAS, oneDNN 2.x and a C++17 compiler yourself" >&2
fi
npm ci --no-audit --no-fund
npm run build:native
npm run build
echo "setup done: try 'npm run bench:kernels' or 'npx dcvg env'"
