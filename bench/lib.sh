# Shell helpers shared by bench/h2load.sh and bench/peer/run.sh (sourced, not run).

# A free TCP port on 127.0.0.1.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# Writes DIR/health.bin and DIR/decide.bin: pre-encoded gRPC frames for h2load (a 0 byte for
# "uncompressed", the 4-byte big-endian length, the protobuf bytes).
grpc_frames() {
  python3 - "$1" <<'PY'
import struct, sys
def field(n, s):
    b = s.encode()
    return bytes([n << 3 | 2, len(b)]) + b
def frame(msg):
    return b"\0" + struct.pack(">I", len(msg)) + msg
open(sys.argv[1] + "/health.bin", "wb").write(frame(b""))  # HealthCheckRequest{service: ""}
# DecideRequest{user_id: "bench-user", channel: "web", limit: 3}
open(sys.argv[1] + "/decide.bin", "wb").write(frame(field(1, "bench-user") + field(2, "web") + bytes([5 << 3, 3])))
PY
}

# User + system CPU ticks of the given pids.
cpu_ticks() {
  local t=0 p
  for p in "$@"; do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done
  echo "$t"
}

# tp_metric PORT NAME [FRAGMENT...]: the sum of a Touchpoint counter's samples on the metrics
# endpoint at PORT whose labels contain every fragment.
tp_metric() {
  local port=$1; shift
  curl -s "http://127.0.0.1:$port/metrics" | python3 -c '
import sys
name, frags = sys.argv[1], sys.argv[2:]
print(int(sum(float(l.rsplit(" ", 1)[1]) for l in sys.stdin if l.startswith(name) and all(f in l for f in frags))))' "$@"
}

# tp_resets PORT RPC: calls of RPC counted CANCELLED or UNKNOWN. h2load resets the streams in
# flight when its time is up, and the server counts those so (UNKNOWN when the reset cut a
# response short): at most one per stream in flight, not failures.
tp_resets() {
  echo $(( $(tp_metric "$1" touchpoint_grpc_requests_total "rpc=\"$2\"" 'code="CANCELLED"') \
    + $(tp_metric "$1" touchpoint_grpc_requests_total "rpc=\"$2\"" 'code="UNKNOWN"') ))
}

# redis_cpu_usec PORT: CPU the redis-server at PORT has used so far (INFO cpu, user + system), in
# microseconds. Per-call Redis CPU is its difference over a run divided by the calls: unlike the
# sum of INFO commandstats, it does not count a command run inside a script twice (in its own
# line and in the script's), and it includes the networking Redis does per call.
redis_cpu_usec() {
  redis-cli -p "$1" info cpu | awk -F: '/^used_cpu_(user|sys):/ {t += $2} END {printf "%d\n", t * 1e6}'
}
