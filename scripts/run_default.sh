#!/usr/bin/env bash
# Set up, then run the default grid (real SmolLM2 on real data, local Ray, local MLflow).
set -euo pipefail
cd "$(dirname "$0")/.."
UQROUTE_SETUP_LLM=1 bash scripts/setup.sh
export HF_HUB_OFFLINE=1 RAY_AUTH_MODE=${RAY_AUTH_MODE:-disabled}
exec .venv/bin/uqroute run conf/grid/default.yaml "$@"
