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
trap stop_embedded_postgres EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
# --address local: always a fresh local cluster, never a stale one from an earlier `ray start`.
.venv/bin/serve run --address local serve_config.yaml
