#!/usr/bin/env bash
# Before/after: runs bench/h2load.sh against two release binaries in alternating rounds (A, B,
# A, B, ...), each round on a fresh redis-server, and prints one line per run plus the medians
# of each binary. What BENCHMARKS.md's before/after table is measured with.
#
#   bench/ab.sh BIN_A BIN_B [--rounds 3] [--duration 8]
#
# e.g. keep the old binary before rebuilding:
#   cp target/release/touchpoint /tmp/tp-before && cargo build --release --bin touchpoint
#   bench/ab.sh /tmp/tp-before target/release/touchpoint
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 2 ] || { echo "usage: bench/ab.sh BIN_A BIN_B [--rounds N] [--duration S]" >&2; exit 2; }
a=$1 b=$2; shift 2
rounds=3 duration=8
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) rounds=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for r in $(seq "$rounds"); do
  for side in A B; do
    bin=$a; [ "$side" = B ] && bin=$b
    TOUCHPOINT_BIN=$bin bench/h2load.sh --rounds 1 --duration "$duration" >"$out/$side.$r" 2>&1 \
      || { echo "run $side $r failed:"; cat "$out/$side.$r"; exit 1; }
    echo "== $side (round $r, $bin)"
    grep -E '^  (health|decide) |^decision log' "$out/$side.$r"
  done
done
python3 - "$out" "$rounds" <<'EOF'
import re, statistics as st, sys
d, rounds = sys.argv[1], int(sys.argv[2])
rows = {}
for side in "AB":
    for r in range(1, rounds + 1):
        t = open(f"{d}/{side}.{r}").read()
        h = re.search(r"^  health\s+([\d.]+) calls/s\s+server\s+([\d.]+) us", t, re.M)
        m = re.search(r"^  decide\s+([\d.]+) calls/s\s+server\s+([\d.]+) us/call\s+redis\s+([\d.]+) us/call\s+(\d+) B", t, re.M)
        l = re.search(r"(\d+) B of Redis memory per entry", t)
        rows.setdefault(side, []).append((float(h[1]), float(m[1]), float(m[2]), float(m[3]), float(m[4]), float(l[1]) if l else 0))
print("medians (range) per binary:")
names = ["health calls/s", "decide calls/s", "server us/decide", "redis us/decide", "B sent to redis/decide", "B log memory/decide"]
for side in "AB":
    cols = list(zip(*rows[side]))
    ratio = [dd / hh for hh, dd, *_ in rows[side]]
    parts = [f"{n} {st.median(c):.1f} ({min(c):.1f}-{max(c):.1f})" for n, c in zip(names, cols)]
    print(f"  {side}: " + "; ".join(parts) + f"; decide/health {st.median(ratio):.2f} ({min(ratio):.2f}-{max(ratio):.2f})")
EOF
