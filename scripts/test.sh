#!/usr/bin/env bash
# Set up, then run the test suite (unit + integration with real Ray, MLflow and SmolLM2).
# Extra arguments go to pytest (e.g. -m "not slow").
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1 RAY_AUTH_MODE=${RAY_AUTH_MODE:-disabled}
exec .venv/bin/python -m pytest -q "$@"
