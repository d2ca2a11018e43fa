#!/usr/bin/env bash
# Set up, then run the tests. With no arguments: the gate, the unit tests with no model loaded
# (about a minute on 2 cores after setup). Arguments go to pytest; the suites by marker:
#   bash scripts/test.sh --all                             everything CI runs (.ci/run), ~25 min
#   bash scripts/test.sh -m "(integration or model) and not slow"
#                              real Ray + MLflow server + SmolLM2 + headless Chromium, ~10 min
#   bash scripts/test.sh -m slow    fault injection, two-node cluster, ray job submit, ~9 min
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
PYTEST=(.venv/bin/python -m pytest -q --durations=10)
# the gate runs on two pytest-xdist workers (its tests share no port, server or Ray session)
if [ "$#" -eq 0 ]; then set -- -n 2 -m "not slow and not integration and not model"; fi
if [ "$1" = "--all" ]; then
  shift
  "${PYTEST[@]}" -m "not slow" "$@"
  exec "${PYTEST[@]}" -m slow "$@"
fi
exec "${PYTEST[@]}" "$@"
