#!/usr/bin/env bash
# Benchmarks, tables in bench/results/:
#   scripts/bench.sh            turn latency: Ray Serve graph vs plain process (POST /v1/turn)
#   scripts/bench.sh sessions   voice-to-voice over WebSocket sessions, techniques on/off
#   scripts/bench.sh cache      tool calls and turns with the cache off / in memory / Redis
#   scripts/bench.sh tools      tool evaluation set: accuracy, safety, latency (--speech too)
#   scripts/bench.sh capacity   sessions per machine on simulated providers
#   scripts/bench.sh stt        embedded recognisers: WER (synthesized, human), latency, memory
#   scripts/bench.sh eot        end of turn: false cuts on paused questions, detection latency
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
source scripts/env.sh
case "${1:-turns}" in
  sessions) shift; exec .venv/bin/python -m bench.sessions "$@" ;;
  cache) shift; exec .venv/bin/python -m bench.cache "$@" ;;
  tools) shift; exec .venv/bin/python -m bench.tool_eval "$@" ;;
  stt) shift; exec .venv/bin/python -m bench.stt "$@" ;;
  eot) shift; exec .venv/bin/python -m bench.end_of_turn "$@" ;;
  capacity) shift; exec .venv/bin/python -m bench.capacity "$@" ;;
  turns) [ $# -gt 0 ] && shift; exec .venv/bin/python -m bench.turns "$@" ;;
  *) exec .venv/bin/python -m bench.turns "$@" ;;
esac
