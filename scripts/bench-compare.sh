#!/usr/bin/env bash
# Our speed against PyTorch before and after a change, measured in one run on one machine:
#
#   scripts/bench-compare.sh BEFORE_REV [BENCH...]     BENCH: kernels, dcaev, train-ae (default: all three)
#
# Exports BEFORE_REV (any git revision: a commit, a tag, main~3) into a temporary folder (git archive; no worktree is
# registered), links this checkout's node_modules into it, builds its native addon and TypeScript there, builds this
# checkout's TypeScript (and its addon if it is not built), then runs each benchmark for BEFORE and for this checkout
# back to back, so both meet the same machine state, and prints the ours/PyTorch ratios side by side with the CPU
# name. Ratios < 1 mean ours is faster than PyTorch. The JSON of every run stays in the output folder it names
# (DCVG_BENCH_OUT to choose one). The benchmarks take ~15-30 minutes together on 2 cores; the machine should be idle.
# The exported tree stays in /tmp/dcvg-bench-before-<commit> for the next run against the same revision (its build is
# then reused); delete it when done.
#
# Extra arguments for one benchmark: DCVG_BENCH_ARGS_KERNELS, DCVG_BENCH_ARGS_DCAEV, DCVG_BENCH_ARGS_TRAIN_AE
# (e.g. DCVG_BENCH_ARGS_DCAEV="--frames 80 --reps 3"), passed to both sides.
set -euo pipefail
cd "$(dirname "$0")/.."
after=$(pwd)

if [ $# -lt 1 ] || [ "$1" = -h ] || [ "$1" = --help ]; then
  sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'
  [ $# -lt 1 ] && exit 2 || exit 0
fi
rev=$1
shift
benches=("$@")
[ ${#benches[@]} -eq 0 ] && benches=(kernels dcaev train-ae)
for b in "${benches[@]}"; do
  case $b in kernels | dcaev | train-ae) ;; *) echo "bench-compare: unknown benchmark '$b' (kernels, dcaev, train-ae)" >&2; exit 2 ;; esac
done

sha=$(git rev-parse --verify --quiet "$rev^{commit}") || { echo "bench-compare: '$rev' is not a revision of this repository" >&2; exit 2; }
[ -d node_modules ] || { echo "bench-compare: run npm install (or scripts/setup.sh) first: node_modules is missing" >&2; exit 2; }

out=${DCVG_BENCH_OUT:-$(mktemp -d /tmp/dcvg-bench-compare.XXXXXX)}
mkdir -p "$out"
before=/tmp/dcvg-bench-before-${sha:0:12}
cpu=$(lscpu 2>/dev/null | sed -n 's/^Model name:[[:space:]]*//p' | head -1)
echo "bench-compare: before = $rev (${sha:0:12}) in $before; after = $after ($(git rev-parse --short HEAD)$(git diff --quiet HEAD -- 2>/dev/null || echo ', with uncommitted changes'))"
echo "bench-compare: CPU: ${cpu:-unknown}, $(nproc) cores; results in $out"

# ---- the BEFORE tree -----------------------------------------------------------------------------------------------
if [ ! -f "$before/.dcvg-export-done" ]; then
  rm -rf "$before"
  mkdir -p "$before"
  git archive "$sha" | tar -x -C "$before"
  touch "$before/.dcvg-export-done"
fi
ln -sfn "$after/node_modules" "$before/node_modules"
# Shared test data sits beside the checkout (../shared); the exported tree sees the same one.
[ -e "$after/../shared" ] && [ ! -e "$before/../shared" ] && echo "bench-compare: note: $before/../shared does not exist; benchmarks that read shared clips fall back to synthetic input" >&2
echo "bench-compare: building BEFORE ($([ -f "$before/native/build/Release/dcvg_native.node" ] && echo 'native addon already built, ')TypeScript)"
if [ ! -f "$before/native/build/Release/dcvg_native.node" ]; then
  (cd "$before" && node scripts/build-native.mjs >"$out/build-native-before.log" 2>&1) || { echo "bench-compare: BEFORE's native build failed, see $out/build-native-before.log" >&2; exit 1; }
fi
(cd "$before" && npx tsc -p tsconfig.json) || { echo "bench-compare: BEFORE's TypeScript build failed" >&2; exit 1; }

# ---- the AFTER tree (this checkout) ---------------------------------------------------------------------------------
echo "bench-compare: building AFTER (TypeScript$([ -f native/build/Release/dcvg_native.node ] || echo ', native addon'))"
if [ ! -f native/build/Release/dcvg_native.node ]; then
  node scripts/build-native.mjs >"$out/build-native-after.log" 2>&1 || { echo "bench-compare: the native build failed, see $out/build-native-after.log" >&2; exit 1; }
fi
npx tsc -p tsconfig.json

# ---- run: for each benchmark, BEFORE then AFTER ---------------------------------------------------------------------
run_one() { # side dir bench
  local side=$1 dir=$2 b=$3 script extra
  case $b in
    kernels) script=kernels; extra=${DCVG_BENCH_ARGS_KERNELS:-} ;;
    dcaev) script=dcaev; extra=${DCVG_BENCH_ARGS_DCAEV:-} ;;
    train-ae) script=train_ae; extra=${DCVG_BENCH_ARGS_TRAIN_AE:-} ;;
  esac
  echo "bench-compare: $b, $side ($(uptime | sed 's/.*load average/load average/'))"
  # shellcheck disable=SC2086  # extra is a list of arguments
  if ! (cd "$dir" && node "dist/bench/$script.js" --json $extra >"$out/$b-$side.json" 2>"$out/$b-$side.log"); then
    echo "bench-compare: $b ($side) failed; the last lines of $out/$b-$side.log:" >&2
    tail -5 "$out/$b-$side.log" >&2
    return 1
  fi
}
status=0
for b in "${benches[@]}"; do
  run_one before "$before" "$b" || status=1
  run_one after "$after" "$b" || status=1
done

# ---- the table ------------------------------------------------------------------------------------------------------
node - "$out" "$cpu" "$rev" "${benches[@]}" <<'EOF'
const fs = require('fs');
const [out, cpu, rev, ...benches] = process.argv.slice(2);
const load = (b, side) => {
  try {
    return JSON.parse(fs.readFileSync(`${out}/${b}-${side}.json`, 'utf8'));
  } catch {
    return null;
  }
};
// Every benchmark's JSON, as rows of [name, ours/torch ratio].
const rowsOf = {
  kernels: (j) => (j.cases ?? []).map((c) => [c.name, c.ratio]),
  dcaev: (j) => (j.rows ?? []).map((r) => [`encode+decode ${r.frames} frames`, r.ratio]),
  'train-ae': (j) => [[`training step (vs torch ${j.ratio_vs ?? '?'})`, j.ratio]],
};
const f = (x) => (typeof x === 'number' ? x.toFixed(3) : '-');
console.log(`\nours / PyTorch time ratios (< 1: ours faster), before = ${rev}, after = this checkout; CPU: ${cpu || 'unknown'}\n`);
console.log('| benchmark | case | before | after | after / before |');
console.log('|---|---|---:|---:|---:|');
for (const b of benches) {
  const jb = load(b, 'before'), ja = load(b, 'after');
  const rb = new Map(jb ? rowsOf[b](jb) : []), ra = new Map(ja ? rowsOf[b](ja) : []);
  for (const name of new Set([...rb.keys(), ...ra.keys()])) {
    const x = rb.get(name), y = ra.get(name);
    const rel = typeof x === 'number' && typeof y === 'number' ? (y / x).toFixed(3) : '-';
    console.log(`| ${b} | ${name} | ${f(x)} | ${f(y)} | ${rel} |`);
  }
  if (!jb || !ja) console.log(`| ${b} | (${!jb ? 'before' : 'after'} has no result; see its .log) | | | |`);
}
EOF
exit $status
