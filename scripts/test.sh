#!/usr/bin/env bash
# Lint, type-check and run every test against real models, a real local Ray and real services.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh dev
source scripts/env.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
mkdir -p artifacts
.venv/bin/python -m pytest -q -p no:cacheprovider tests "$@"
