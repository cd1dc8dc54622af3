#!/usr/bin/env bash
# Screenshots of the web console as the demo serves it, from headless Chromium.
#
#   scripts/screenshots.sh [BINARY] [OUT_DIR]
#
# Runs `BINARY demo` (default target/release/touchpoint, built if missing) on free ports, waits
# for its API key, checks over HTTP that the console shows all five stages, offer performance
# and KPI status, and saves one PNG per view into OUT_DIR (default docs/console): the whole
# page's top (KPIs and funnel), offers, experiments and models. Installs chromium when it is
# missing. The test command runs it with the debug binary into a temporary directory.
set -euo pipefail
cd "$(dirname "$0")/.."
bin="${1:-target/release/touchpoint}"
out="${2:-docs/console}"
if [ ! -x "$bin" ]; then cargo build --release --locked --bin touchpoint; fi
if ! command -v chromium >/dev/null 2>&1; then
  sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq chromium >/dev/null
fi
mkdir -p "$out"
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
grpc=$(port)
http=$(port)
log=$(mktemp)
profile=$(mktemp -d)
"$bin" demo --listen "127.0.0.1:$grpc" --metrics-listen "127.0.0.1:$http" >"$log" 2>&1 &
demo=$!
trap 'kill $demo 2>/dev/null || true; rm -rf "$log" "$profile"' EXIT
key=""
for _ in $(seq 1 600); do
  key=$(grep -o 'tpk_[0-9a-f]*' "$log" | head -1 || true)
  [ -n "$key" ] && break
  kill -0 $demo 2>/dev/null || { cat "$log"; echo "the demo stopped" >&2; exit 1; }
  sleep 0.5
done
[ -n "$key" ] || { cat "$log"; echo "no API key from the demo" >&2; exit 1; }
base="http://127.0.0.1:$http/console?days=30"
page=$(curl -sf -u "console:$key" "$base")
for want in '>awareness<' '>consideration<' '>conversion<' '>retention<' '>advocacy<' 'id=offers' 'id=kpis' \
  'class=met' 'CTR' 'entered '; do
  grep -qF -- "$want" <<<"$page" || { echo "the console does not show $want" >&2; exit 1; }
done
shoot() { # name view height
  local url="$base"
  [ -n "$2" ] && url="$base&view=$2"
  timeout 120 chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --user-data-dir="$profile" \
    --window-size="1280,$3" --screenshot="$out/$1.png" "http://console:$key@${url#http://}" >/dev/null 2>&1
  local size
  size=$(stat -c %s "$out/$1.png")
  [ "$size" -gt 20000 ] || { echo "$out/$1.png is only $size bytes: a blank page?" >&2; exit 1; }
  echo "$out/$1.png ($size bytes)"
}
shoot console-overview "" 1000
shoot console-offers offers 1000
shoot console-experiments experiments 700
shoot console-models models 400
