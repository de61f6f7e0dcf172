#!/usr/bin/env bash
# Set up and run the whole test suite, offline. This is the command README.md gives and .ci/run calls.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --test
export HF_HUB_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1 GRADIO_ANALYTICS_ENABLED=False
python3 -m pytest -q "$@"
