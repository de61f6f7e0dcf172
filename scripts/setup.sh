#!/usr/bin/env bash
# Install what the app needs (and, with --test, what the tests need) into the current Python.
# torch goes first and pinned, so that pip takes the CPU wheel rather than a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q --disable-pip-version-check torch==2.13.0
if [ "${1:-}" = "--test" ]; then
  python3 -m pip install -q --disable-pip-version-check -r requirements-test.txt
  # Browser tests drive Debian's chromium; Playwright's own browser download does not work offline.
  if ! command -v chromium >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
    else
      sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
    fi
  fi
else
  python3 -m pip install -q --disable-pip-version-check -r requirements.txt
fi
