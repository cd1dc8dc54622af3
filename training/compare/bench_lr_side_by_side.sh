#!/usr/bin/env bash
# Logistic regression on 1,000,000 x 30: touchpoint-train's IRLS against scikit-learn's
# solvers, alternating round by round so that a change in machine load hits every contender
# alike. Prints one line per run and, at the end, the median and range of each.
#
# Usage: bash training/compare/bench_lr_side_by_side.sh [ROUNDS] [DIR]
# (needs target/release/touchpoint-train and python3 with scikit-learn; DIR holds the .npy data)
set -euo pipefail
ROUNDS=${1:-5}
DIR=${2:-/tmp/lr}
T=${T:-target/release/touchpoint-train}
HERE=$(dirname "$0")
LOG=$(mktemp)
$T bench-lr --rows 1000000 --features 30 --stock-rows 0 --npy "$DIR" > /dev/null
echo "nproc $(nproc); $(lscpu | grep 'Model name' | sed 's/  */ /g'); OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset}"
for r in $(seq 1 "$ROUNDS"); do
  echo "round $r: load $(cut -d' ' -f1-3 /proc/loadavg)"
  for threads in 1 2; do
    $T bench-lr --rows 1000000 --features 30 --stock-rows 0 --threads "$threads" | grep '^IRLS' | tee -a "$LOG"
  done
  for solver in lbfgs newton-cholesky liblinear; do
    for threads in 1 2; do
      python3 "$HERE/bench_lr.py" "$DIR" --solver "$solver" --threads "$threads" | tee -a "$LOG"
    done
  done
done
python3 - "$LOG" <<'PY'
import re, statistics, sys
runs = {}
for line in open(sys.argv[1]):
    m = re.match(r"(.*?):\s+([\d.]+) s\s+(\d+) iterations\s+test ROC AUC ([\d.]+)", line)
    if m:
        runs.setdefault(m.group(1), []).append((float(m.group(2)), m.group(3), m.group(4)))
print("\n| contender | median fit time | min – max | runs | iterations | test ROC AUC |\n|---|---|---|---|---|---|")
for name, v in sorted(runs.items(), key=lambda kv: statistics.median(x[0] for x in kv[1])):
    t = [x[0] for x in v]
    print(f"| {name} | {statistics.median(t):.3f} s | {min(t):.3f} – {max(t):.3f} s | {len(t)} | {v[0][1]} | {v[0][2]} |")
PY
rm -f "$LOG"
