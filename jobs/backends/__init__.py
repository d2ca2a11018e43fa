"""Model backends: where a model is loaded and run (worker side).

- ``hf``: transformers causal LMs (hub id, local folder, or GGUF file / wheel), batched
  generation with per-token log-probs, entropies and probe-layer hidden states.
- ``openai``: OpenAI-compatible HTTP endpoints (vLLM, cloud APIs), LLM or SLM; as an SLM it
  gives every stat but hidden states (entropies approximated from top-k log-probs).

Adding a backend: one module with a class following ``base.Backend`` and one line in
``BACKENDS`` below; configs select it with ``backend: <key>``.
"""

from __future__ import annotations

from jobs.backends.base import DEFAULT_BATCH_SIZE, ModelConf  # noqa: F401
from jobs.backends.hf_conf import HF_DTYPES, HF_QUANTIZE  # noqa: F401  (the hf backend's vocabularies)
from jobs.registry import Registry

#: backend name -> its config class (torch-free; it names the factory that builds the backend on the
#: worker). Adding a backend: its module, its config class, one line here.
BACKENDS = Registry("backend", {"hf": "jobs.backends.hf_conf:HFConf", "openai": "jobs.backends.openai_http:OpenAIConf"})


def conf_class(backend: str) -> type[ModelConf]:
    """The config class of ``backend`` (UnknownNameError, with "did you mean", otherwise)."""
    return BACKENDS.get(backend)


def model_conf(conf) -> ModelConf:
    """A typed model config: ``conf`` itself, or one built from a mapping of its fields (a YAML
    file read by a script or test); unknown fields are a TypeError naming them."""
    if isinstance(conf, ModelConf):
        return conf
    cls = conf_class(conf.get("backend", "hf"))
    import dataclasses

    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(conf) - fields)
    if unknown:
        raise TypeError(f"{cls.__name__}: unknown field(s) {unknown}; valid: {', '.join(sorted(fields))}")
    return cls(**conf)


def no_stats(backend: str) -> tuple[str, ...]:
    """Stats (``jobs.stages.stat_stages()`` names) ``backend`` cannot provide."""
    return conf_class(backend).no_stats


def make_backend(conf):
    """Build the backend of a model config (typed, or a mapping of its fields)."""
    from jobs.registry import import_string

    m = model_conf(conf)
    return import_string(type(m).factory)(m)
