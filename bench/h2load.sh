#!/usr/bin/env bash
# Independent load generator: h2load (Debian's nghttp2-client) posting pre-encoded gRPC frames
# to a release `touchpoint serve`, alternating grpc.health.v1.Health/Check (the floor cost of a
# tonic call on the same server) with touchpoint.v1.Decisions/Decide, round after round.
# Prints per-round calls/s, server CPU per call (from /proc), Redis CPU per call (INFO
# cpu of the redis-server process) and the medians with Decide/Health ratios. h2load counts HTTP 200 as success
# whatever the grpc-status, so the server's own per-code counters are checked after each run.
#
#   bench/h2load.sh [--store redis|memory] [--rounds 3] [--duration 10] [--conns 8] [--streams 8]
#
# Installs nghttp2-client (and redis-server for --store redis) when missing; builds the release
# binary unless TOUCHPOINT_BIN names one. The server runs with authentication on: the script
# mints a key (decide, ingest) into a keys file and sends it as `authorization: Bearer`.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh

store=redis rounds=3 duration=10 conns=8 streams=8
while [ $# -gt 0 ]; do
  case "$1" in
    --store) store=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --conns) conns=$2; shift 2 ;;
    --streams) streams=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done

need=()
command -v h2load >/dev/null || need+=(nghttp2-client)
command -v curl >/dev/null || need+=(curl)
[ "$store" = redis ] && { command -v redis-server >/dev/null || need+=(redis-server); }
if [ ${#need[@]} -gt 0 ]; then
  sudo_cmd=""; [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${need[@]}" >/dev/null
fi

bin=${TOUCHPOINT_BIN:-target/release/touchpoint}
if [ -z "${TOUCHPOINT_BIN:-}" ]; then cargo build --release --locked --bin touchpoint >&2; fi

work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

url=memory://
if [ "$store" = redis ]; then
  rport=$(free_port)
  redis-server --port "$rport" --bind 127.0.0.1 --save "" --appendonly no --dir "$work" >"$work/redis.log" 2>&1 &
  pids+=($!)
  until redis-cli -p "$rport" ping >/dev/null 2>&1; do sleep 0.1; done
  url=redis://127.0.0.1:$rport
fi
# Authentication is on, as in production: a key minted for this run, in a keys file.
minted=$("$bin" keys new --id h2load --role decide --role ingest)
export TOUCHPOINT_API_KEY=$(printf '%s\n' "$minted" | awk '/^  tpk_/ {print $1}')
printf '%s\n' "$minted" | sed -n '/^\[\[auth.keys\]\]/,$p' | sed 's/^\[\[auth.keys\]\]/[[keys]]/' >"$work/keys.toml"
export TOUCHPOINT_AUTH_KEYS_FILE=$work/keys.toml
gport=$(free_port) mport=$(free_port)
# The issue 9 bench config: the example config (5 stages, rules) with its two models loaded.
# Explanations are off: the Decide body does not ask for them.
{ cat examples/touchpoint.toml
  printf '\n[models]\nchurn = "%s"\npurchase = "%s"\n' "$PWD/examples/models/churn.json" "$PWD/examples/models/purchase.json"
} >"$work/touchpoint.toml"
# Throughput, not shedding, is measured: the interactive limit admits every stream in flight
# (twice over: a slot is freed when the response body is dropped, a moment after the client
# has its answer and may have sent its next call).
TOUCHPOINT_SERVER_LISTEN=127.0.0.1:$gport TOUCHPOINT_SERVER_METRICS_LISTEN=127.0.0.1:$mport \
  TOUCHPOINT_SERVER_LIMITS_INTERACTIVE=$((2 * conns * streams)) \
  TOUCHPOINT_REDIS_URL=$url RUST_LOG=${RUST_LOG:-warn} "$bin" serve --config "$work/touchpoint.toml" >"$work/server.log" 2>&1 &
spid=$!
pids+=($spid)
addr=http://127.0.0.1:$gport
for _ in $(seq 100); do "$bin" client --addr "$addr" decide warmup >/dev/null 2>&1 && break; sleep 0.2; done
"$bin" client --addr "$addr" events --user bench-user --type page_view >/dev/null
"$bin" client --addr "$addr" events --user bench-user --type product_view >/dev/null

grpc_frames "$work"

headers=(-H 'content-type: application/grpc' -H 'te: trailers')
[ -n "${TOUCHPOINT_API_KEY:-}" ] && headers+=(-H "authorization: Bearer $TOUCHPOINT_API_KEY")

metric() { tp_metric "$mport" "$@"; }
redis_net_in() {
  [ "$store" = redis ] || { echo 0; return; }
  redis-cli -p "$rport" info stats | awk -F: '/^total_net_input_bytes/ {print $2+0}'
}
redis_usec() { if [ "$store" = redis ]; then redis_cpu_usec "$rport"; else echo 0; fi; }

hz=$(getconf CLK_TCK)
results="$work/results.tsv"
run() { # name path body
  local name=$1 path=$2 body=$3 rpc=$4
  local ok0 bad0 can0 deg0 t0 out r0
  r0=$(redis_usec)
  ok0=$(metric touchpoint_grpc_requests_total "rpc=\"$rpc\"" 'code="OK"')
  bad0=$(metric touchpoint_grpc_requests_total "rpc=\"$rpc\"")
  can0=$(tp_resets "$mport" "$rpc")
  deg0=$(metric touchpoint_decisions_degraded_total)
  t0=$(cpu_ticks "$spid")
  local in0; in0=$(redis_net_in)
  out=$(h2load -D "$duration" --warm-up-time=1 -c "$conns" -m "$streams" -d "$body" "${headers[@]}" "$addr$path")
  local t1 ok1 bad1 can1 deg1 rps done_n us_server us_redis
  t1=$(cpu_ticks "$spid")
  ok1=$(metric touchpoint_grpc_requests_total "rpc=\"$rpc\"" 'code="OK"')
  bad1=$(metric touchpoint_grpc_requests_total "rpc=\"$rpc\"")
  can1=$(tp_resets "$mport" "$rpc")
  deg1=$(metric touchpoint_decisions_degraded_total)
  rps=$(grep -oP 'finished in [^,]+, \K[0-9.]+(?= req/s)' <<<"$out")
  done_n=$(grep -oP 'requests: .* \K[0-9]+(?= succeeded)' <<<"$out")
  # Costs per call answered OK by the server over the whole run, h2load's warm-up second
  # included (h2load's own count leaves the warm-up out, the CPU counters do not).
  local answered=$(( ok1 - ok0 ))
  [ "$answered" -gt 0 ] || answered=$done_n
  us_server=$(python3 -c "print(round(($t1-$t0)/$hz*1e6/max($answered,1), 1))")
  us_redis=$(python3 -c "print(round(($(redis_usec)-$r0)/max($answered,1), 1))")
  local b_redis; b_redis=$(python3 -c "print(round(($(redis_net_in)-$in0)/max($answered,1)))")
  # Streams reset when h2load stopped are not failures (bench/lib.sh, tp_resets).
  local cancelled=$(( can1 - can0 ))
  [ "$cancelled" -le $(( conns * streams )) ] || cancelled=0
  local not_ok=$(( (bad1 - bad0) - (ok1 - ok0) - cancelled )) degraded=$(( deg1 - deg0 ))
  [ "$rpc" = Check ] && { not_ok=0; degraded=0; }
  echo "$answered" >"$work/last_done"
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$rps" "$us_server" "$us_redis" "$not_ok" "$degraded" "$b_redis" >>"$results"
  printf '  %-8s %10s calls/s  server %6s us/call  redis %5s us/call  %5s B/call to redis  non-OK %s  degraded %s\n' \
    "$name" "$rps" "$us_server" "$us_redis" "$b_redis" "$not_ok" "$degraded"
}

echo "store=$store rounds=$rounds duration=${duration}s clients=$conns streams=$streams ($(nproc) cores)"
for r in $(seq "$rounds"); do
  echo "round $r"
  run health /grpc.health.v1.Health/Check "$work/health.bin" Check
  # Redis's own accounting of the last round's Decides (INFO commandstats, reset first).
  [ "$store" = redis ] && [ "$r" = "$rounds" ] && redis-cli -p "$rport" config resetstat >/dev/null
  run decide /touchpoint.v1.Decisions/Decide "$work/decide.bin" Decide
done
if [ "$store" = redis ]; then
  echo "Redis commands per Decide in the last round (INFO commandstats over the Decides h2load counted; decision.lua writes a group of concurrent decisions per EVALSHA, and the commands a script runs are counted in its EVALSHA too):"
  redis-cli -p "$rport" info commandstats | tr -d '\r' | python3 -c '
import re, sys
rows = []
for l in sys.stdin:
    m = re.match(r"cmdstat_([^:]+):calls=(\d+),usec=(\d+)", l)
    if m and m.group(1) != "config|resetstat":
        rows.append((m.group(1), int(m.group(2)), int(m.group(3))))
decides = max(int(sys.argv[1]), 1)
for name, calls, usec in sorted(rows, key=lambda r: -r[2]):
    print(f"  {name:18} {calls / decides:5.2f} calls  {usec / decides:6.2f} us")
' "$(cat "$work/last_done")"
fi
if [ "$store" = redis ]; then
  # What a decision leaves in Redis: the decision log's memory per entry.
  n=$(redis-cli -p "$rport" xlen tp:dlog) mem=$(redis-cli -p "$rport" memory usage tp:dlog samples 0)
  echo "decision log: $n entries, $(python3 -c "print(round(${mem:-0}/max(${n:-0},1)))") B of Redis memory per entry (MEMORY USAGE)"
  # The bytes each entry writes (its field names and values), median over the newest 1,000,
  # read with a bare RESP client (binary values; no redis-py needed).
  python3 - "$rport" <<'PY'
import socket, statistics, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
args = [b"XREVRANGE", b"tp:dlog", b"+", b"-", b"COUNT", b"1000"]
s.sendall(b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args))
f = s.makefile("rb")
def read():
    line = f.readline()
    t, rest = line[:1], line[1:-2]
    if t == b"*":
        return [read() for _ in range(int(rest))]
    if t == b"$":
        n = int(rest)
        return None if n < 0 else f.read(n + 2)[:-2]
    return rest
sizes = [sum(len(x) for x in fields) for _, fields in read()]
if sizes:
    print(f"decision log: {statistics.median(sizes):.0f} B written per entry (field names and values, median of the newest {len(sizes)})")
PY
fi
curl -s "http://127.0.0.1:$mport/metrics" | grep '^touchpoint_grpc_requests_total{' | grep 'rpc="Decide"' \
  | grep -v 'code="OK"' | sed 's/^/  not OK (CANCELLED\/UNKNOWN: streams reset when h2load stopped): /' || true
python3 - "$results" <<'EOF'
import statistics as st, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])]
def col(name, i): return [float(r[i]) for r in rows if r[0] == name]
h, d = col("health", 1), col("decide", 1)
ratios = [b / a for a, b in zip(h, d)]
print(f"median calls/s: health {st.median(h):.0f} (range {min(h):.0f}-{max(h):.0f}), "
      f"decide {st.median(d):.0f} (range {min(d):.0f}-{max(d):.0f})")
print(f"decide/health ratio per round: {', '.join(f'{x:.2f}' for x in ratios)}; median {st.median(ratios):.2f}")
print(f"median server CPU per call: health {st.median(col('health', 2)):.1f} us, decide {st.median(col('decide', 2)):.1f} us; "
      f"Redis CPU per decide {st.median(col('decide', 3)):.1f} us; sent to Redis per decide {st.median(col('decide', 6)):.0f} B")
bad = sum(col("decide", 4)); deg = sum(col("decide", 5))
print(f"decide calls not OK: {bad:.0f}; degraded: {deg:.0f}")
sys.exit(1 if bad else 0)
EOF
