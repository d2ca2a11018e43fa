#!/usr/bin/env bash
# mypy on the typed core: the files listed once in pyproject.toml ([tool.mypy] files; add a module
# there once it is clean), or on the paths given as arguments. The strictness and the third-party
# libraries without stubs are in the same section. mypy comes with the test extras (scripts/setup.sh).
#   bash scripts/typecheck.sh                     the listed files
#   bash scripts/typecheck.sh orchestrator/plan.py    one more file, before adding it to the list
set -euo pipefail
cd "$(dirname "$0")/.."
exec "${PYTHON:-.venv/bin/python}" -m mypy "$@"
