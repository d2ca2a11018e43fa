#!/usr/bin/env bash
# Set up, then run the tests: unit tests plus the end-to-end grid on a real local Ray and a real
# MLflow server with the real SmolLM2 (~5 min on 2 cores). Arguments go to pytest; the default
# leaves out the slow suites (fault injection, two-node cluster: ~12 min more), which
# `bash scripts/test.sh -m slow` runs and CI (.ci/run) runs as well.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# the report test looks at the HTML report in a real headless Chromium (Debian package)
if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  apt-get install -y -q chromium >/dev/null 2>&1 \
    || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium >/dev/null 2>&1; } \
    || echo "warning: could not install chromium; the report's browser test will be skipped"
fi
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 RAY_AUTH_MODE=${RAY_AUTH_MODE:-disabled}
if [ "$#" -eq 0 ]; then set -- -m "not slow"; fi
exec .venv/bin/python -m pytest -q --durations=10 "$@"
