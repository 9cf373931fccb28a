#!/usr/bin/env bash
# Runs the quickstart sweep (examples/quickstart.yaml) on a throwaway server and one worker with
# one slot, as scripts/demo does, then takes the dashboard screenshots of the finished sweep with
# dashboard_screenshots.mjs (Chromium and Firefox, 1366x768). Everything runs on 127.0.0.1 with
# ephemeral ports and is stopped at the end. The database is kept as OUT_DIR/quickstart.db: run
# again with the same OUT_DIR (e.g. after changing web/ and rebuilding the server) and only the
# screenshots are taken again.
#   bench/dashboard/quickstart_screenshots.sh BUILD_DIR OUT_DIR [extra dashboard_screenshots args]
# BUILD_DIR must hold bitsweep-server, bitsweep-worker and bitsweep (ninja those three targets).
set -euo pipefail
cd "$(dirname "$0")/../.."
[ $# -ge 2 ] || { echo "usage: $0 BUILD_DIR OUT_DIR [dashboard_screenshots args]" >&2; exit 2; }
bin=$1 out=$2
shift 2
mkdir -p "$out"
run=$(mktemp -d "${TMPDIR:-/tmp}/bitsweep-quickstart-XXXXXX")
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$run"
}
trap cleanup EXIT
(umask 077; openssl rand -hex 32 >"$run/worker.token"; openssl rand -hex 32 >"$run/client.token")

db=$out/quickstart.db
fresh=1
[ -f "$db" ] && fresh=0
"$bin/server/bitsweep-server" --db "$db" --listen 127.0.0.1:0 --http 127.0.0.1:0 \
  --worker-token-file "$run/worker.token" --client-token-file "$run/client.token" \
  --port-file "$run/ports.json" 2>"$out/server.log" &
pids+=("$!")
for _ in $(seq 1 300); do [ -s "$run/ports.json" ] && break; sleep 0.1; done
[ -s "$run/ports.json" ] || { echo "the server did not start (see $out/server.log)" >&2; exit 1; }
grpc_port=$(grep -o '"grpc_port": *[0-9]*' "$run/ports.json" | grep -o '[0-9]*$')
http_port=$(grep -o '"http_port": *[0-9]*' "$run/ports.json" | grep -o '[0-9]*$')
export BITSWEEP_SERVER="127.0.0.1:$grpc_port"

"$bin/worker/bitsweep-worker" --server "$BITSWEEP_SERVER" --slots 1 --data-dir var/data \
  --token-file "$run/worker.token" 2>"$out/worker.log" &
pids+=("$!")

if [ "$fresh" -eq 1 ]; then
  start=$SECONDS
  "$bin/client/bitsweep" --token-file "$run/client.token" submit examples/quickstart.yaml --watch
  echo "quickstart sweep: $((SECONDS - start)) s"
  "$bin/client/bitsweep" --token-file "$run/client.token" results 1 >"$out/results.txt" || true
fi
node bench/dashboard/dashboard_screenshots.mjs "http://127.0.0.1:$http_port" "$out" "$@"
