#!/usr/bin/env bash
# Load test with locust, headless, against a running app (scripts/run.sh):
#   scripts/load.sh light|medium|heavy|stress [--minutes N | --seconds N] [--host URL]
#                   [--simulated] [--sessions-url auto|proxy|ws://...] [--out DIR] [-- LOCUST ARGS]
# 10 / 50 / 100 / 200 users (voice sessions 8 in 10, HTTP turns, OpenAI chat); CSV and HTML
# in artifacts/load/, a summary table on stdout; exit status is locust's (1 on any failure).
# --simulated starts (and stops) an app on simulated providers for the run instead.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! .venv/bin/python -c 'import locust, websocket' 2>/dev/null; then
  scripts/setup.sh load
fi
source scripts/env.sh
PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" exec .venv/bin/python -m bench.load.run "$@"
