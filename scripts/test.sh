#!/usr/bin/env bash
# Set up, then run the tests: unit tests plus the end-to-end grid on a real local Ray and a real
# MLflow server with the real SmolLM2 (~5 min on 2 cores). Arguments go to pytest; the default
# leaves out the slow suites (fault injection, two-node cluster: ~12 min more), which
# `bash scripts/test.sh -m slow` runs and CI (.ci/run) runs as well.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 RAY_AUTH_MODE=${RAY_AUTH_MODE:-disabled}
if [ "$#" -eq 0 ]; then set -- -m "not slow"; fi
exec .venv/bin/python -m pytest -q --durations=10 "$@"
