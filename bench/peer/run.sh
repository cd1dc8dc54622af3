#!/usr/bin/env bash
# Touchpoint vs a Python grpcio + redis-py + numpy peer of the same Decide (issue 9), side by side
# on one Redis: h2load (Debian's nghttp2-client) posts pre-encoded gRPC frames to each server in
# turn, round after round, Health/Check (the floor cost of a call of each framework) then Decide.
# Prints calls/s per round, the medians, the Touchpoint/peer ratios and server CPU per call (from
# /proc: every peer process). h2load counts HTTP 200 as success whatever the grpc-status, so the
# servers' own counters are read after each run (Touchpoint's /metrics, the peer's SIGUSR1 dump),
# a real gRPC client probes both at the end, and before the load check.py compares both servers'
# answers (offers, scores, segments, every candidate's reason) for seeded pairs of users.
#
#   bench/peer/run.sh [--rounds 3] [--duration 10] [--users 1000] [--conns 8] [--streams 8]
#                     [--workers N] [--server aio-blocking|aio|sync] [--quick]
#
# --quick: 1 round of 2 s, 200 users, 5 answer-check pairs (under a minute; what CI could run).
# --workers: peer processes (default: one per core). Installs nghttp2-client / redis-server when
# missing, creates bench/peer/.venv from requirements.txt, and builds the release binary unless
# TOUCHPOINT_BIN names one. Exits 1 when the answers differ or a call was not OK (degraded answers are reported).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cd "$here/../.."
source bench/lib.sh

rounds=3 duration=10 users=1000 conns=8 streams=8 workers=$(nproc) server=aio-blocking pairs=20
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) rounds=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --users) users=$2; shift 2 ;;
    --conns) conns=$2; shift 2 ;;
    --streams) streams=$2; shift 2 ;;
    --workers) workers=$2; shift 2 ;;
    --server) server=$2; shift 2 ;;
    --quick) rounds=1 duration=2 users=200 pairs=5; shift ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done

need=()
command -v h2load >/dev/null || need+=(nghttp2-client)
command -v redis-server >/dev/null || need+=(redis-server)
command -v curl >/dev/null || need+=(curl)
if [ ${#need[@]} -gt 0 ]; then
  sudo_cmd=""; [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${need[@]}" >/dev/null
fi

venv=$here/.venv
stamp=$(sha256sum "$here/requirements.txt" | cut -c1-16)
if [ "$(cat "$venv/.stamp" 2>/dev/null)" != "$stamp" ]; then
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q -r "$here/requirements.txt" >&2
  echo "$stamp" >"$venv/.stamp"
fi
py=$venv/bin/python

bin=${TOUCHPOINT_BIN:-target/release/touchpoint}
if [ -z "${TOUCHPOINT_BIN:-}" ]; then cargo build --release --locked --bin touchpoint >&2; fi

work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

# The example config with both example models (absolute paths), as a temp copy.
config=$work/touchpoint.toml
cp examples/touchpoint.toml "$config"
printf '\n[models]\nchurn = "%s"\npurchase = "%s"\n' "$PWD/examples/models/churn.json" "$PWD/examples/models/purchase.json" >>"$config"

rport=$(free_port)
redis-server --port "$rport" --bind 127.0.0.1 --save "" --appendonly no --dir "$work" >"$work/redis.log" 2>&1 &
pids+=($!)
until redis-cli -p "$rport" ping >/dev/null 2>&1; do sleep 0.1; done
url=redis://127.0.0.1:$rport

gport=$(free_port) mport=$(free_port) pport=$(free_port)
# Authentication off: the peer has none, so both sides do the same work per call (an older
# binary without [auth] ignores the variable). Throughput, not shedding, is measured: the
# limits admit every stream in flight and the seeding's concurrent writes.
TOUCHPOINT_SERVER_LISTEN=127.0.0.1:$gport TOUCHPOINT_SERVER_METRICS_LISTEN=127.0.0.1:$mport \
  TOUCHPOINT_SERVER_LIMITS_INTERACTIVE=$((conns * streams > 256 ? conns * streams : 256)) \
  TOUCHPOINT_SERVER_LIMITS_INGEST=256 TOUCHPOINT_SERVER_LIMITS_PROFILES=256 \
  TOUCHPOINT_REDIS_URL=$url TOUCHPOINT_AUTH_ENABLED=false RUST_LOG=${RUST_LOG:-warn} \
  "$bin" serve --config "$config" >"$work/server.log" 2>&1 &
spid=$!
pids+=($spid)
tp=127.0.0.1:$gport
up=0
for _ in $(seq 100); do "$bin" client --addr "http://$tp" status >/dev/null 2>&1 && { up=1; break; }; sleep 0.2; done
[ "$up" = 1 ] || { echo "touchpoint did not start:" >&2; cat "$work/server.log" >&2; exit 1; }

echo "seeding $users users (+ bench-user and comparison pairs)"
(cd "$here" && "$py" seed.py events "$work/events.jsonl" --users "$users")
"$bin" client --addr "http://$tp" events --file "$work/events.jsonl"
(cd "$here" && "$py" seed.py attributes "$tp" --users "$users")

mkdir -p "$work/stats"
"$py" "$here/peer.py" --config "$config" --redis "$url" --listen "127.0.0.1:$pport" --workers "$workers" \
  --server "$server" --pidfile "$work/peer.pids" --stats-dir "$work/stats" >"$work/peer.log" 2>&1 &
pids+=($!)
peer=127.0.0.1:$pport
ready=0
for _ in $(seq 150); do
  if "$py" -c 'import grpc, sys; from grpc_health.v1 import health_pb2 as h, health_pb2_grpc as g
s = g.HealthStub(grpc.insecure_channel(sys.argv[1]))
sys.exit(0 if s.Check(h.HealthCheckRequest(), timeout=1).status == h.HealthCheckResponse.SERVING else 1)' "$peer" 2>/dev/null \
    && [ "$(wc -l <"$work/peer.pids" 2>/dev/null || echo 0)" -gt "$((workers > 1 ? workers : 0))" ]; then
    ready=1; break
  fi
  sleep 0.2
done
[ "$ready" = 1 ] || { echo "the peer did not start:" >&2; cat "$work/peer.log" >&2; exit 1; }
sleep 1 # every worker process up (each compiles the protos)

status=0
(cd "$here" && "$py" check.py compare "$tp" "$peer" --pairs "$pairs") || status=1

grpc_frames "$work"

headers=(-H 'content-type: application/grpc' -H 'te: trailers')
hz=$(getconf CLK_TCK)
metric() { tp_metric "$mport" "$@"; }
peer_stats() { # "not_ok degraded" summed over the peer's worker processes
  rm -f "$work"/stats/*.json
  local p
  for p in $peer_pids; do kill -USR1 "$p" 2>/dev/null || true; done
  sleep 0.3
  python3 -c '
import glob, json, sys
s = [json.load(open(f)) for f in glob.glob(sys.argv[1] + "/*.json")]
print(sum(x["invalid"] + x["error"] for x in s), sum(x["degraded"] for x in s))' "$work/stats"
}
redis_usec() { redis_cpu_usec "$rport"; }
peer_pids=$(cat "$work/peer.pids")
results=$work/results.tsv
run() { # server name path body
  local who=$1 name=$2 path=$3 body=$4 addr ok0 all0 deg0 t0 out res0=0 r0
  r0=$(redis_usec)
  if [ "$who" = touchpoint ]; then
    addr=$tp
    ok0=$(metric touchpoint_grpc_requests_total 'rpc="Decide"' 'code="OK"')
    all0=$(metric touchpoint_grpc_requests_total 'rpc="Decide"')
    res0=$(tp_resets "$mport" Decide)
    deg0=$(metric touchpoint_decisions_degraded_total)
    t0=$(cpu_ticks "$spid")
  else
    addr=$peer
    read -r all0 deg0 < <(peer_stats)
    ok0=0
    t0=$(cpu_ticks $peer_pids)
  fi
  out=$(h2load -D "$duration" --warm-up-time=1 -c "$conns" -m "$streams" -d "$body" "${headers[@]}" "http://$addr$path")
  local t1 ok1 all1 deg1 rps done_n non2xx us_server us_redis not_ok degraded
  if [ "$who" = touchpoint ]; then
    t1=$(cpu_ticks "$spid")
    ok1=$(metric touchpoint_grpc_requests_total 'rpc="Decide"' 'code="OK"')
    all1=$(metric touchpoint_grpc_requests_total 'rpc="Decide"')
    deg1=$(metric touchpoint_decisions_degraded_total)
    # Streams reset when h2load stopped are not failures (bench/lib.sh, tp_resets).
    local resets=$(( $(tp_resets "$mport" Decide) - res0 ))
    [ "$resets" -le $((conns * streams)) ] || resets=0
    not_ok=$(( (all1 - all0) - (ok1 - ok0) - resets )) degraded=$((deg1 - deg0))
  else
    t1=$(cpu_ticks $peer_pids)
    read -r all1 deg1 < <(peer_stats)
    not_ok=$((all1 - all0)) degraded=$((deg1 - deg0))
  fi
  [ "$name" = health ] && { not_ok=0; degraded=0; }
  rps=$(grep -oP 'finished in [^,]+, \K[0-9.]+(?= req/s)' <<<"$out")
  done_n=$(grep -oP 'requests: .* \K[0-9]+(?= succeeded)' <<<"$out")
  # Non-2xx HTTP answers, and requests h2load saw fail, error or time out.
  non2xx=$(grep -oP 'status codes: .*' <<<"$out" | awk -F'[ ,]+' '{print $5 + $7 + $9}')
  non2xx=$((non2xx + $(grep -oP 'requests: .*' <<<"$out" | awk -F'[ ,]+' '{print $10 + $12 + $14}')))
  us_server=$(python3 -c "print(round(($t1-$t0)/$hz*1e6/max($done_n,1), 1))")
  us_redis=$(python3 -c "print(round(($(redis_usec)-$r0)/max($done_n,1), 1))")
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$who" "$name" "$rps" "$us_server" "$us_redis" "$((not_ok + non2xx))" "$degraded" >>"$results"
  printf '  %-10s %-6s %9s calls/s  server %7s us/call  redis %5s us/call  not OK %s  degraded %s\n' \
    "$who" "$name" "$rps" "$us_server" "$us_redis" "$((not_ok + non2xx))" "$degraded"
}

echo "rounds=$rounds duration=${duration}s clients=$conns streams=$streams ($(nproc) cores); peer: $server, $workers process(es)"
echo "load before: $(uptime)"
for r in $(seq "$rounds"); do
  echo "round $r"
  run touchpoint health /grpc.health.v1.Health/Check "$work/health.bin"
  run touchpoint decide /touchpoint.v1.Decisions/Decide "$work/decide.bin"
  run peer health /grpc.health.v1.Health/Check "$work/health.bin"
  run peer decide /touchpoint.v1.Decisions/Decide "$work/decide.bin"
done
echo "load after: $(uptime)"
(cd "$here" && "$py" check.py probe "$tp" --calls 500 && "$py" check.py probe "$peer" --calls 500) || status=1
python3 - "$results" <<'EOF' || status=1
import statistics as st, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])]
def col(who, name, i): return [float(r[i]) for r in rows if r[0] == who and r[1] == name]
for name in ("health", "decide"):
    t, p = col("touchpoint", name, 2), col("peer", name, 2)
    ratios = [a / b for a, b in zip(t, p)]
    print(f"{name}: median calls/s touchpoint {st.median(t):.0f} (range {min(t):.0f}-{max(t):.0f}), "
          f"peer {st.median(p):.0f} (range {min(p):.0f}-{max(p):.0f}); touchpoint/peer per round "
          f"{', '.join(f'{x:.1f}' for x in ratios)}; median {st.median(ratios):.1f}")
    print(f"  median server CPU per call: touchpoint {st.median(col('touchpoint', name, 3)):.1f} us, "
          f"peer {st.median(col('peer', name, 3)):.1f} us; Redis CPU per call: touchpoint "
          f"{st.median(col('touchpoint', name, 4)):.1f} us, peer {st.median(col('peer', name, 4)):.1f} us")
bad = sum(float(r[5]) for r in rows); deg = sum(float(r[6]) for r in rows)
print(f"calls not OK: {bad:.0f}; degraded answers: {deg:.0f}"
      + (" (fallbacks: the store path overran decisions.deadline_ms; a loaded machine?)" if deg else ""))
sys.exit(1 if bad else 0)
EOF
exit $status
