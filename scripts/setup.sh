#!/usr/bin/env bash
# Idempotent set-up: .venv at the repo root, the package with its extras, model files.
# Usage: scripts/setup.sh [extra,...]   (embedded is always installed)
set -euo pipefail
cd "$(dirname "$0")/.."
extras="embedded${1:+,$1}"
python_bin="${PYTHON:-$(command -v python3.11 || command -v python3)}"
if [ ! -x .venv/bin/python ]; then
  "$python_bin" -m venv .venv
fi
.venv/bin/python -c 'import sys; assert sys.version_info[:2] == (3, 11), "Python 3.11 is required"'
.venv/bin/python -m pip install -q --upgrade "pip>=24" wheel
# llama-cpp-python builds from source (~5 min on 2 cores, once; pip caches the wheel).
CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-2}" \
  .venv/bin/python -m pip install -q -e ".[${extras}]"
# The browser tests need Debian's Chromium and its driver.
if [[ ",${1:-}," == *",dev,"* ]] && ! command -v chromedriver >/dev/null; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver >/dev/null
  else
    echo "browser tests need Debian's chromium and chromium-driver: sudo apt-get install chromium chromium-driver" >&2
    exit 1
  fi
fi
# Assemble split model files into the cache and verify their pinned sha256.
HF_HUB_OFFLINE=1 .venv/bin/jarvis models
