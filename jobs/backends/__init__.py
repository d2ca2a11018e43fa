"""Model backends: where a model is loaded and run (worker side).

- ``hf``: transformers causal LMs (hub id, local folder, or GGUF file / wheel), batched
  generation with per-token log-probs, entropies and probe-layer hidden states.
- ``openai``: OpenAI-compatible HTTP endpoints (vLLM, cloud APIs), LLM or SLM; as an SLM it
  gives every stat but hidden states (entropies approximated from top-k log-probs).

Adding a backend: one module with a class following ``base.Backend`` and one line in
``BACKENDS`` below; configs select it with ``backend: <key>``.
"""

from __future__ import annotations

from jobs.registry import Registry

#: the hf backend's weight dtypes and quantizations (``jobs/backends/hf.py``); here, torch-free, so
#: the driver can validate a config without importing torch
HF_DTYPES: tuple[str, ...] = ("float32", "float16", "bfloat16", "auto")
HF_QUANTIZE: tuple[str, ...] = ("int8_dynamic",)

BACKENDS = Registry("backend", {"hf": "jobs.backends.hf:from_conf", "openai": "jobs.backends.openai_http:from_conf"})

#: Stats (``jobs.stages.STAT_STAGE`` names) a backend cannot provide; the config refuses an SLM on
#: such a backend paired with a UQ method that requires one.
NO_STATS: dict[str, tuple[str, ...]] = {"openai": ("hidden_state",)}


def make_backend(conf: dict):
    """Build the backend named by ``conf['backend']`` from a resolved model config dict."""
    return BACKENDS.get(conf.get("backend", "hf"))(conf)
