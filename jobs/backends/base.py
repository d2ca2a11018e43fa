"""What every model backend is configured with and returns. Plain data; no torch."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Protocol, runtime_checkable

import numpy as np

from jobs.conf import ConfView

#: a model config's batch size when it names none (``ModelConf.batch_size``), the only place it is set
DEFAULT_BATCH_SIZE = 8


@dataclass(frozen=True, eq=False)
class ModelConf(ConfView):
    """What every SLM / LLM config has (``conf/slm/<name>.yaml``, ``conf/llm/<name>.yaml``), whatever
    its backend. A backend's own fields and checks are in its subclass (``jobs.backends.BACKENDS``:
    ``HFConf``, ``OpenAIConf``), which names the factory building it (``factory``, "module:function").

    Defaults live here, once: nothing downstream supplies another."""

    factory: ClassVar[str] = ""
    #: stats (``jobs.stages.stat_stages()`` names) this backend cannot provide: the config refuses an SLM
    #: on it paired with a UQ method that requires one
    no_stats: ClassVar[tuple[str, ...]] = ()
    #: this backend's own fields that change its outputs: part of the model's identity (its units'
    #: keys, ``orchestrator.grid.model_identity``) beside the identity fields every model has
    identity_fields: ClassVar[tuple[str, ...]] = ()
    #: how the cost axis prices a model on this backend that no pattern of the price table names:
    #: "local" (wall time) or "api" (tokens) (``jobs.cost.PriceTable.rate_for``)
    priced_as: ClassVar[str] = "local"

    name: str = "???"  # omegaconf.MISSING: required
    backend: str = "hf"
    max_new_tokens: int | None = None  # cap on every generation of this model (cost control)
    # resources requested from Ray for the actor hosting this model
    num_gpus: float = 0.0
    num_cpus: float = 1.0
    resources: dict = field(default_factory=dict)  # custom Ray resources, e.g. {node_a: 1}
    batch_size: int = DEFAULT_BATCH_SIZE
    # long inputs (README "Long inputs"): prompts longer than this are cut (default: the model's
    # context length minus the generation budget); batches formed by prompt length within a chunk
    max_prompt_tokens: int | None = None
    batch_by_length: bool = False
    # a batch's padded prompt tokens (rows x its longest prompt) stay within this budget: batches are
    # formed over the chunk sorted by prompt tokens, and a prompt longer than the budget runs alone
    # (``jobs.engine.token_batches``). None: batch_size alone decides. Not part of the model's
    # identity: a row's outputs do not depend on its batch (README "Batch invariance").
    max_batch_tokens: int | None = None
    replicas: int = 1  # actors hosting this model at once (each with the resources above)

    def check(self, where: str) -> None:
        """Raise ValueError naming the bad field, its value and the valid choices (the config turns
        it into a ConfigError). The backend's own checks."""

    def check_common(self, where: str) -> None:
        """The checks of the fields every model config has (run before the backend's ``check``)."""
        if self.max_batch_tokens is not None and int(self.max_batch_tokens) < 1:
            raise ValueError(
                f"{where}: max_batch_tokens={self.max_batch_tokens!r} is not valid; valid: a positive "
                f"number of padded prompt tokens per batch, or null (no cap)"
            )

    def warnings(self) -> list[str]:
        """Things a user must know before a run with this model starts."""
        return []


Messages = list[dict]


@dataclass
class Generation:
    """One generated continuation.

    text:           decoded new text (special tokens stripped).
    n_prompt_tokens / n_new_tokens: token counts (EOS excluded from n_new_tokens).
    token_logprobs: log p of each new token under the model (EOS excluded), float32 (n_new,).
    token_entropy:  full-vocabulary entropy in nats at each new position, float32 (n_new,);
                    HTTP backends approximate it from the top-k log-probs (``openai_http``).
    token_ids:      the new token ids (EOS excluded); empty where the backend has no ids (HTTP).
    token_texts:    the new tokens as text, where the backend gives text instead of ids (HTTP
                    endpoints); None: use ``backend.token_strings(token_ids)``.
    hidden:         hidden state of the configured layer at the last new token, float32 (H,);
                    None where the backend cannot see hidden states (HTTP endpoints).
    latency_s:      wall time of the batch this generation was in, divided by the batch size.
    prompt_hidden:  the same layer's hidden state at the last prompt token, float32 (H,): the
                    learned routers' query representation; None where hidden states are unseen.
    """

    text: str
    n_prompt_tokens: int
    n_new_tokens: int
    token_logprobs: np.ndarray | None = None
    token_entropy: np.ndarray | None = None
    token_ids: list[int] = field(default_factory=list)
    token_texts: list[str] | None = None
    hidden: np.ndarray | None = None
    latency_s: float = 0.0
    prompt_hidden: np.ndarray | None = None


class Backend(Protocol):
    """What every backend has: every method a stage (``jobs/stages/``) calls on any backend."""

    identity: str  # recorded in the gen unit's manifest (``model_identity``)

    def generate(
        self,
        prompts: list[Messages],
        *,
        max_new_tokens: int,
        do_sample: bool = False,
        temperature: float = 1.0,
        num_return_sequences: int = 1,
        seed: int = 0,
        with_stats: bool = False,
        row_seeds: list[int] | None = None,
    ) -> list[Generation]:
        """``num_return_sequences`` generations per prompt, prompt-major. ``row_seeds``: one seed per
        returned generation (``len(prompts) * num_return_sequences``, prompt-major), each from
        ``jobs.stages.base.row_seed(unit seed, sample id, draw j)``: a sampled generation's draws then
        depend on its own seed alone, never on its batch-mates, the batch size or the sharding.
        None: ``seed`` for the whole batch (callers outside the stages)."""
        ...

    def true_false_prob(self, prompts: list[Messages]) -> np.ndarray: ...

    def token_strings(self, ids: list[int]) -> list[str]: ...

    def render(self, messages: Messages) -> str: ...


@runtime_checkable
class CountsTokens(Protocol):
    """Optional (the hf backend): a backend that counts prompt tokens. Without it the stages fit no
    prompt to a budget (``jobs.engine.fit_prompt``, ``fit_answer``, ``prompt_budget``)."""

    @property
    def context_length(self) -> int | None: ...  # tokens the model attends to; None: unknown

    def prompt_tokens(self, messages: Messages) -> int: ...  # tokens of the rendered prompt


@runtime_checkable
class ScoresOptions(Protocol):
    """Optional (the hf backend): a backend that scores answer options in one forward pass; needed by
    ``decoding.answer_mode: constrained`` (``jobs/stages/constrained.py``)."""

    def choice_logprobs(
        self, prompts: list[Messages], options: list[list[str]], prefix: str = ""
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """(log p of each option as the next token after prompt + prefix (B, K), -inf where the option
        is not one token; the hidden state at the last prompt token (B, H), or None)."""
        ...


@dataclass
class ContinuationScore:
    """One log-likelihood request ``(context, continuation)`` scored (``continuation_logprobs``).

    token_logprobs: log p of each continuation token given the context and the tokens before it,
                    float64 (n,) (lm-evaluation-harness ``loglikelihood``: its sum is the request's
                    log-likelihood).
    token_entropy:  full-vocabulary entropy (nats) at each of those positions, float64 (n,); an HTTP
                    backend approximates it from the top-k log-probs (``openai_http.topk_entropy``).
    token_texts:    the continuation tokens as text.
    hidden:         the probe layer's hidden state at the last context token, float32 (H,); None
                    where hidden states are unseen (HTTP).
    """

    token_logprobs: np.ndarray
    token_entropy: np.ndarray
    token_texts: list[str]
    hidden: np.ndarray | None = None

    @property
    def logprob(self) -> float:
        return float(np.sum(self.token_logprobs))


@runtime_checkable
class ScoresContinuations(Protocol):
    """Optional (hf, openai): a backend that scores text continuations of raw-text contexts, as
    lm-evaluation-harness ``loglikelihood`` requests; needed by ``decoding.answer_mode: cloze``
    (``jobs/stages/cloze.py``)."""

    def continuation_logprobs(self, questions: list[list[tuple[str, str]]]) -> list[list[ContinuationScore]]:
        """Per question, per request ``(context, continuation)``: its ``ContinuationScore``. The
        context is raw text (no chat template); it is tokenized alone and the continuation's tokens
        are those of ``context + continuation`` after the context's (the harness's ``_encode_pair``)."""
        ...
