#!/usr/bin/env bash
# Run the app with embedded CPU models on http://127.0.0.1:8000 (Ctrl-C stops it and its Ray).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
source scripts/env.sh
exec .venv/bin/serve run serve_config.yaml
