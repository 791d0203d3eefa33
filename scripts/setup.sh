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
# The browser tests need Debian's Chromium and its driver; the cache tests start their own
# redis-server processes.
if [[ ",${1:-}," == *",dev,"* ]]; then
  missing=()
  command -v chromedriver >/dev/null || missing+=(chromium chromium-driver)
  command -v redis-server >/dev/null || missing+=(redis-server)
  if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then
      apt-get update -q >/dev/null
      DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null
    else
      echo "the tests need Debian packages: sudo apt-get install ${missing[*]}" >&2
      exit 1
    fi
  fi
fi
# Assemble split model files into the cache and verify their pinned sha256.
HF_HUB_OFFLINE=1 .venv/bin/jarvis models
