#!/usr/bin/env bash
# Run the app with embedded CPU models on http://127.0.0.1:8000 (Ctrl-C stops it and its Ray).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
source scripts/env.sh
# The embedded Postgres (DATABASE_URL unset) runs as its own server: stop it with the app.
stop_embedded_postgres() {
  if [ -z "${DATABASE_URL:-}" ]; then
    .venv/bin/python -c 'from pipeline.config import Settings; from pipeline.store.embedded import stop_embedded; stop_embedded(Settings().cache_dir / "pgdata")' || true
  fi
}
# A fresh local Ray of our own (never a stale one from an earlier `ray start`), so that its
# Prometheus endpoint has a fixed port (`serve run` alone picks a random one): README, Metrics.
gcs="127.0.0.1:${RAY_GCS_SERVER_PORT}"
# No node drain on exit: Ctrl-C (or TERM to the group) reaches Serve and the head together,
# and a drain would wait 30 s for a GCS that is already going.
RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S=0 .venv/bin/ray start --head --block --port="${RAY_GCS_SERVER_PORT}" --node-ip-address=127.0.0.1 \
  --dashboard-host=127.0.0.1 --metrics-export-port="${JARVIS_METRICS_PORT:-8080}" \
  --disable-usage-stats >/dev/null &
ray_head=$!
stop() {
  kill -TERM "$ray_head" 2>/dev/null && wait "$ray_head" 2>/dev/null  # `--block` ends its Ray
  stop_embedded_postgres
}
trap stop EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
until .venv/bin/ray status --address "$gcs" >/dev/null 2>&1; do
  kill -0 "$ray_head" 2>/dev/null || { echo "ray start failed (is port ${RAY_GCS_SERVER_PORT} in use?)" >&2; exit 1; }
  sleep 1
done
echo "Ray's Prometheus metrics: http://127.0.0.1:${JARVIS_METRICS_PORT:-8080}/metrics"
.venv/bin/serve run --address "$gcs" serve_config.yaml
