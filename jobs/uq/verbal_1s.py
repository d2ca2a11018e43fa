"""Verbalization, one stage (paper method 4): uncertainty = 1 - stated confidence in [0, 1].

One prompt asks for the answer and a 0-100 confidence in the same output ("The answer is X.
Confidence: N%"). That confidence is about the answer written beside it, which may differ from the
plain greedy answer, so the setting extracts the 1s answer (``jobs.answers.extract`` on the
``verbal_1s_raw`` output, the confidence clause removed first), records it per sample with whether it
agrees with the greedy answer (``verbal_1s_answer``, ``verbal_1s_agrees``; the setting metric
``answer_agreement`` is their mean), and the param ``route`` decides which answer is judged:

  own_answer (default)  correctness -- and so the AUROC and the routing curve -- of the 1s answer:
                        the SLM's answer to a query kept local is the one the confidence vouches for.
                        This is what verbalized-confidence papers score (Tian et al. 2023, Xiong et al.
                        2024: answer and confidence come from one generation) and the only reading
                        under which the method's AUROC measures the confidence's own alignment.
  greedy_answer         correctness of the plain greedy answer, with the 1s confidence attached to it
                        (a deployment that answers with one prompt and asks for confidence in another).

The paper does not say which it scored (paper notes, method 4); the route is recorded in the UQ
params (and so in the setting's hash and its MLflow params).

Unparseable confidence -> NaN; the method's NaN policy is ``drop`` (the later version of the paper
drops those samples): they are left out of the metrics, and the setting reports their share
(``unscored_share``) beside the AUROC and each record's ``confidence_parse``.
"""

from __future__ import annotations

from jobs.uq.base import ROUTES, UQMethod, complement


def verbal_1s(stats, *, route: str = "own_answer"):
    # route picks the judged answer (the setting reads it); the uncertainty is the same either way
    return complement(stats, "verbal_1s_conf")


METHOD = UQMethod(
    name="verbal_1s",
    requires=("verbal_1s_conf",),
    fn=verbal_1s,
    description="1 - verbalized confidence given with the answer (one prompt)",
    nan_policy="drop",
    parsed_stat="verbal_1s_conf",
    answer_stage="verbal_1s",
    param_choices={"route": ROUTES},
    definition_depends_on=(),  # a stated probability, generated in every answer mode
)
