#!/usr/bin/env bash
# Lint, type-check and run every test against real models, a real local Ray and real services.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh dev,cloud
source scripts/env.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
# Postgres: the machine's (127.0.0.1:5432, database `test`) or, when none runs there, an
# embedded one for this run. Redis: the tests start their own redis-server processes.
if [ -z "${TEST_DATABASE_URL:-}" ] && { [ -n "${JARVIS_TEST_EMBEDDED_PG:-}" ] ||
    ! (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null; }; then
  test_pgdata="${JARVIS_CACHE_DIR:-$HOME/.cache/jarvis-serve}/test-pgdata"
  TEST_DATABASE_URL="$(.venv/bin/python -m tests.services start "$test_pgdata")"
  export TEST_DATABASE_URL
  trap '.venv/bin/python -m tests.services stop "$test_pgdata"' EXIT
  echo "no Postgres on 127.0.0.1:5432: using an embedded one for the tests"
fi
mkdir -p artifacts
.venv/bin/python -m pytest -q -p no:cacheprovider tests "$@"
