#!/usr/bin/env bash
# The test command: installs what the suite needs when it is missing, then runs every test
# of the workspace (library, binary, integration tests against real redis-server processes,
# the trainer crate).
set -euo pipefail
cd "$(dirname "$0")/.."

# openssl: the rediss:// test makes its CA and server certificate with the openssl CLI.
# nghttp2-client (h2load) and curl: the smoke run of bench/h2load.sh (tests/it/cli.rs).
need=()
command -v redis-server >/dev/null 2>&1 && command -v redis-cli >/dev/null 2>&1 || need+=(redis-server)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
command -v h2load >/dev/null 2>&1 || need+=(nghttp2-client)
command -v curl >/dev/null 2>&1 || need+=(curl)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing ${need[*]} (tests start their own servers on random ports)"
  sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${need[@]}" >/dev/null
fi

# Property tests (tests/it/fuzz.rs) draw a fresh seed on each local run; CI uses a fixed one so
# that a landing is reproducible. A failure prints its minimal input either way; rerun a seed
# with PROPTEST_RNG_SEED=<n>.
if [ "${CI:-}" = "true" ] && [ -z "${PROPTEST_RNG_SEED:-}" ]; then
  export PROPTEST_RNG_SEED=20261123
fi

cargo test --workspace --locked "$@"

# The console as the demo serves it, in headless Chromium (installed when missing): the
# screenshots go to a temporary directory (docs/console holds the committed ones, made with
# `scripts/screenshots.sh` on a release build).
bash scripts/screenshots.sh target/debug/touchpoint "$(mktemp -d)"
