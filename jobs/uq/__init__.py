"""UQ methods: per-sample stats -> one uncertainty per sample.

Where this sits in the flow:
    generation pass (one per SLM x dataset) -> named per-sample stats -> **UQ method** -> uncertainty
    -> routing metrics (``jobs/metrics.py``) -> MLflow / reports

Direction convention (all methods, everywhere): a method returns an **uncertainty, higher = more
uncertain**, one float per sample, NaN where it could not score the sample (e.g. an unparseable
verbalized confidence). What the metrics do with NaN samples is the method's ``nan_policy``
(verbal methods: ``drop``; the others: ``most_uncertain``), which a UQ entry of the config may
override; every setting reports the unscored share (``unscored_share``) beside its AUROC.

The stats a method can read (N samples; produced once by the generation stage):
    token_logprobs  list of N 1-D arrays: log p of each generated answer token (greedy, EOS excluded)
    token_entropy   list of N 1-D arrays: full-vocabulary entropy (nats) at each generated position
    answer_logprob  (N,) log p of the option-letter token at the span the extractor matched (mc), or
                    of the scored option (constrained mc); NaN otherwise (jobs.judge.ANSWER_PROB_RULES)
    option_logprobs list of N 1-D arrays: log of the option distribution renormalized over the options
                    (cloze / constrained answers; empty for a generated one)
    ptrue_prob      (N,) P(True) normalized over {True, False}
    verbal_1s_conf, verbal_2s_conf  (N,) stated confidence in [0, 1], NaN if unparseable
    sampled_texts   list of N lists of m strings sampled at temperature 1.0
    hidden_state    (N, H) float32, 8th-to-last layer at the last generated token
    prompt_hidden_state  list of N (H,) float32 arrays or None: the same layer at the last prompt token
                    (None for an HTTP SLM); the learned routers' query representation
    prompt          list of N str: the rendered prompt text
    correct         (N,) bool SLM correctness; only in fit stats, for trained methods

Run a method with ``compute(UQ_METHODS.get(name), stats, fit_stats, **params)``.

To add a method: write ``jobs/uq/<name>.py`` exporting ``METHOD = UQMethod(name="<name>",
requires=(...), fn=...)`` where ``fn(stats, **params)`` (or ``fn(stats, fit_stats, **params)`` for
a trained method) is a pure function; then add one line ``"<name>": "jobs.uq.<name>:METHOD"`` below.
Nothing is imported until a method is looked up. Say in ``definition_depends_on`` what makes its
statistic a different number on two datasets (the answer mode by default; the option count for a
statistic over the options; nothing for a stated probability): datasets that differ there are
never pooled for it (``jobs/uq/definition.py``).
"""

from __future__ import annotations

from jobs.registry import Registry
from jobs.uq.base import UQMethod, compute

UQ_METHODS = Registry(
    "uq method",
    {
        # the paper's eight
        "avg_token_prob": "jobs.uq.avg_token_prob:METHOD",
        "perplexity": "jobs.uq.perplexity:METHOD",
        "ptrue": "jobs.uq.ptrue:METHOD",
        "verbal_1s": "jobs.uq.verbal_1s:METHOD",
        "verbal_2s": "jobs.uq.verbal_2s:METHOD",
        "jaccard": "jobs.uq.jaccard:METHOD",
        "probe": "jobs.uq.probe:METHOD",
        "ood_probe": "jobs.uq.probe:OOD_METHOD",
        # cheap extra baselines
        "mean_token_entropy": "jobs.uq.mean_token_entropy:METHOD",
        "max_token_nll": "jobs.uq.max_token_nll:METHOD",
        "option_max_prob": "jobs.uq.option_max_prob:METHOD",
        # learned routers: read the query only (jobs/uq/routers.py); trained on the other datasets, and
        # the in-distribution variants (_id) on the evaluated dataset's own fit rows
        "knn_router": "jobs.uq.knn_router:METHOD",
        "logreg_router": "jobs.uq.logreg_router:METHOD",
        "embed_router": "jobs.uq.embed_router:METHOD",
        "knn_router_id": "jobs.uq.knn_router:ID_METHOD",
        "logreg_router_id": "jobs.uq.logreg_router:ID_METHOD",
        "embed_router_id": "jobs.uq.embed_router:ID_METHOD",
    },
)

#: The eight methods of the paper, in its order.
PAPER_METHODS: tuple[str, ...] = (
    "avg_token_prob",
    "perplexity",
    "ptrue",
    "verbal_1s",
    "verbal_2s",
    "jaccard",
    "probe",
    "ood_probe",
)

__all__ = ["PAPER_METHODS", "UQ_METHODS", "UQMethod", "compute"]
