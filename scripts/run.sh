#!/usr/bin/env bash
# Run the app with embedded CPU models on http://127.0.0.1:8000 (Ctrl-C stops it and its Ray).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
source scripts/env.sh
# --address local: always a fresh local cluster, never a stale one from an earlier `ray start`.
exec .venv/bin/serve run --address local serve_config.yaml
