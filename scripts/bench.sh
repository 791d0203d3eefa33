#!/usr/bin/env bash
# Turn-latency benchmark: Ray Serve graph vs plain process, P50/P90/P99 tables in bench/results/.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
source scripts/env.sh
exec .venv/bin/python -m bench.turns "$@"
