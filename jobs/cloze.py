"""Cloze answers: each option's *text* scored as a continuation of the question prompt.

``decoding.answer_mode: cloze`` (mc and yes/no tasks) answers a question the way
lm-evaluation-harness's ``multiple_choice`` tasks with ``doc_to_choice`` = the option texts (and
lighteval's log-likelihood tasks) score it: one log-likelihood request ``(context,
target_delimiter + choice)`` per option (EleutherAI/lm-evaluation-harness
``lm_eval/api/task.py``, ``ConfigurableTask.construct_requests``; ``target_delimiter`` " "), no
chat template (the harness's default: ``apply_chat_template`` is off unless asked for; uqroute's
SLM SmolLM2-135M-Instruct and LLM Gemma-3-270M base are both scored on the raw text, as their
model cards' zero-shot numbers are). ``process_results`` then gives

  acc       argmax_k  sum of log p of option k's continuation tokens;
  acc_norm  argmax_k  (that sum) / len(choice_k) in characters (the choice without its leading
            delimiter, Python ``len`` as the harness computes ``completion_len``).

Both are recorded; which one *decides* the answer is the dataset's rule below, following the
harness's task yaml: ``acc_norm`` where the task lists acc_norm in its ``metric_list`` (the
number its leaderboards and papers report for these tasks), ``acc`` where it lists acc only.

Per dataset (the ``cloze_format`` of the unit; the harness file each follows):

  format        prompt (context) -> continuations                                  rule      harness task
  arc           "Question: {q}\\nAnswer:" -> " {option text}"                      acc_norm  arc/arc_easy.yaml, arc_challenge.yaml
  hellaswag     preprocess("{activity}: {ctx}") -> " " + preprocess(ending)         acc_norm  hellaswag/hellaswag.yaml (+ utils.py)
  piqa          "Question: {goal}\\nAnswer:" -> " {sol}"                           acc_norm  piqa/piqa.yaml
  openbookqa    "{question_stem}" -> " {option text}"                              acc_norm  openbookqa/openbookqa.yaml
  winogrande    sentence[:blank] + option -> " " + sentence[blank+1:].strip()       acc       winogrande/default.yaml (partial evaluation:
                (one context per option, the same continuation)                              preprocess_winogrande.py)
  boolq         "{title} -- {passage}\\nQuestion: {question}?\\nAnswer:"            acc       super_glue/boolq/default.yaml
                -> " yes" / " no" (SuperGLUE's passage and lower-case question)
  social_iqa    "Q: {context} {question}\\nA:" -> " {answer}"                      acc       siqa/siqa.yaml
  truthfulqa    6-shot QA primer + "\\n\\nQ: {q}\\nA:" -> " {option}"              acc       truthfulqa/truthfulqa_mc1.yaml
  mmlu          "The following are questions (with answers) about {subject}.\\n\\n"  acc       mmlu/continuation (the "cloze" MMLU)
                "Question: {q}\\nAnswer:" -> " {option text}"
  qa            "Question: {q}\\nAnswer:" -> " {option text}", or " yes" / " no"    acc       (no harness task: commonsenseqa's
                for a yes/no question (a passage first when the sample has one)                lm-eval task scores letters; strategyqa,
                                                                                                aqua, mathqa, date_understanding,
                                                                                                coin_flip, hub / local / questions data)

BoolQ: the shipped file is the original release (title, lower-case question and passage apart);
the harness reads SuperGLUE's copy, whose passage is "{title} -- {passage}", and adds "?" to the
question as the file has it. The format rebuilds exactly that text from the adapter's ``meta``
("title", "question_raw"; CLOZE_VERSION 1 scored the passage without its title and the adapter's
capitalized question). A sample without them (another adapter given ``cloze_format: boolq``) is
scored on its context and its question with one trailing "?".

Differences from the harness that the shipped files force: HellaSwag's file joins ctx_a and ctx_b
already, so ctx_b is not re-capitalized.

The adapters frame some questions with a lead-in for the letter prompts (``Sample.question``:
"Which solution achieves the goal better?\\nGoal: ..."); the formats strip it
(``_strip_lead``), so a change of those lead-ins fails here loudly instead of changing the prompt.

``CLOZE_VERSION`` is part of every cloze unit's key: bump it when a format or a rule changes.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from jobs.types import DataError, Sample

CLOZE_VERSION = "2"

#: The decision rules: ``acc`` (summed log p) and ``acc_norm`` (summed log p per character).
RULES: tuple[str, ...] = ("acc", "acc_norm")

#: The target delimiter between context and choice (lm-eval's default ``target_delimiter``).
DELIMITER = " "


@dataclass(frozen=True)
class ClozeQuestion:
    """The log-likelihood requests of one question.

    contexts:      one per option (all equal except for partial evaluation, WinoGrande).
    continuations: one per option, the target delimiter included (" Paris").
    labels:        what the answer is called in ``raw_output`` and judging: the option letters
                   (mc) or "yes" / "no" (yes/no), in option order.
    choices:       the option texts without the delimiter: their lengths normalize acc_norm.
    rule:          "acc" or "acc_norm": which one decides the answer.
    """

    contexts: tuple[str, ...]
    continuations: tuple[str, ...]
    labels: tuple[str, ...]
    choices: tuple[str, ...]
    rule: str

    @property
    def requests(self) -> list[tuple[str, str]]:
        return list(zip(self.contexts, self.continuations))


def pick(sum_logprobs, choices, rule: str) -> tuple[int, int, int]:
    """(decided index, acc index, acc_norm index) from the options' summed log p.

    acc: argmax of the sums; acc_norm: argmax of sum / len(choice) (characters), as
    lm-evaluation-harness ``ConfigurableTask.process_results`` (``completion_len``). Ties go to
    the first option (``np.argmax``, as the harness)."""
    lp = np.asarray(sum_logprobs, dtype=np.float64)
    lengths = np.asarray([max(1, len(c)) for c in choices], dtype=np.float64)
    acc, acc_norm = int(np.argmax(lp)), int(np.argmax(lp / lengths))
    if rule not in RULES:
        raise ValueError(f"cloze rule {rule!r} is not valid; valid choices: {', '.join(RULES)}")
    return (acc if rule == "acc" else acc_norm), acc, acc_norm


def decision_scores(sum_logprobs, choices, rule: str) -> np.ndarray:
    """The per-option scores the rule takes the argmax of (sum, or sum per character)."""
    lp = np.asarray(sum_logprobs, dtype=np.float64)
    if rule == "acc_norm":
        return lp / np.asarray([max(1, len(c)) for c in choices], dtype=np.float64)
    return lp


# ------------------------------------------------------------------------------ the formats


def _strip_lead(sample: Sample, lead: str) -> str:
    q = sample.question
    if not q.startswith(lead):
        raise DataError(
            f"sample {sample.id!r}: cloze expects the adapter's question to start with {lead!r}; got {q[:60]!r}"
        )
    return q[len(lead) :]


def _same_context(context: str, choices, labels, rule: str) -> ClozeQuestion:
    choices = tuple(choices)
    return ClozeQuestion(
        contexts=(context,) * len(choices),
        continuations=tuple(DELIMITER + c for c in choices),
        labels=tuple(labels),
        choices=choices,
        rule=rule,
    )


def _qa_prompt(sample: Sample) -> str:
    passage = f"{sample.context}\n" if sample.context else ""
    return f"{passage}Question: {sample.question.strip()}\nAnswer:"


YES_NO = ("yes", "no")


def _mc(make_context: Callable[[Sample], str], rule: str) -> Callable[[Sample], ClozeQuestion]:
    def fmt(sample: Sample) -> ClozeQuestion:
        if sample.task != "mc":
            raise DataError(f"sample {sample.id!r}: this cloze format is for mc questions; task is {sample.task!r}")
        return _same_context(make_context(sample), sample.choices, sample.choice_labels(), rule)

    return fmt


def _yesno(make_context: Callable[[Sample], str]) -> Callable[[Sample], ClozeQuestion]:
    def fmt(sample: Sample) -> ClozeQuestion:
        if sample.task != "yesno":
            raise DataError(f"sample {sample.id!r}: this cloze format is for yes/no questions; task is {sample.task!r}")
        return _same_context(make_context(sample), YES_NO, YES_NO, "acc")

    return fmt


def hellaswag_preprocess(text: str) -> str:
    """lm-evaluation-harness ``lm_eval/tasks/hellaswag/utils.py:preprocess`` (WikiHow artifacts)."""
    text = text.strip()
    text = text.replace(" [title]", ". ")
    text = re.sub("\\[.*?\\]", "", text)
    return text.replace("  ", " ")


HELLASWAG_LEAD = "Which ending is the most plausible continuation of the text?\n"
PIQA_LEAD = "Which solution achieves the goal better?\nGoal: "
WINOGRANDE_LEAD = "Which option correctly fills the blank (_) in the sentence?\n"


def _hellaswag(sample: Sample) -> ClozeQuestion:
    ctx = hellaswag_preprocess(_strip_lead(sample, HELLASWAG_LEAD))
    return _same_context(ctx, [hellaswag_preprocess(e) for e in sample.choices], sample.choice_labels(), "acc_norm")


def _winogrande(sample: Sample) -> ClozeQuestion:
    """Partial evaluation (``preprocess_winogrande.py``): the context is the sentence up to the
    blank with the option substituted, the continuation the rest of the sentence."""
    sentence = _strip_lead(sample, WINOGRANDE_LEAD)
    i = sentence.index("_")
    target = DELIMITER + sentence[i + 1 :].strip()
    choices = tuple(sample.choices)
    return ClozeQuestion(
        contexts=tuple(sentence[:i] + c for c in choices),
        continuations=(target,) * len(choices),
        labels=sample.choice_labels(),
        choices=choices,
        rule="acc",
    )


#: The 6-shot QA primer of lm-eval's truthfulqa_mc1 (``truthfulqa_mc1.yaml``, ``prompt_qa``).
TRUTHFULQA_PRIMER = (
    "Q: What is human life expectancy in the United States?\n"
    "A: Human life expectancy in the United States is 78 years.\n\n"
    "Q: Who was president of the United States in 1955?\n"
    "A: Dwight D. Eisenhower was president of the United States in 1955.\n\n"
    "Q: Which party did he belong to?\n"
    "A: He belonged to the Republican Party.\n\n"
    "Q: What is the square root of banana?\n"
    "A: I have no comment.\n\n"
    "Q: How does a telescope work?\n"
    "A: Telescopes use lenses or mirrors to focus light and make objects appear closer.\n\n"
    "Q: Where were the 1992 Olympics held?\n"
    "A: The 1992 Olympics were held in Barcelona, Spain."
)


def _mmlu_context(s: Sample) -> str:
    subject = str(s.meta.get("subject", "")).replace("_", " ")
    head = f"The following are questions (with answers) about {subject}.\n\n" if subject else ""
    return f"{head}Question: {s.question.strip()}\nAnswer:"


def _boolq_context(s: Sample) -> str:
    """lm-eval ``super_glue/boolq``: "{{passage}}\\nQuestion: {{question}}?\\nAnswer:" on SuperGLUE's
    row (passage "{title} -- {passage}", the question lower-case as released)."""
    title, raw = s.meta.get("title"), s.meta.get("question_raw")
    passage = f"{title} -- {s.context}" if title else (s.context or "")
    question = raw.strip() if raw else s.question.strip().rstrip("?")
    return f"{passage}\nQuestion: {question}?\nAnswer:"


def _auto_mc(sample: Sample) -> ClozeQuestion:
    return (_yesno(_qa_prompt) if sample.task == "yesno" else _mc(_qa_prompt, "acc"))(sample)


#: format name -> Sample -> ClozeQuestion (see the module docstring's table).
FORMATS: dict[str, Callable[[Sample], ClozeQuestion]] = {
    "arc": _mc(lambda s: f"Question: {s.question}\nAnswer:", "acc_norm"),
    "hellaswag": _hellaswag,
    "piqa": _mc(lambda s: f"Question: {_strip_lead(s, PIQA_LEAD)}\nAnswer:", "acc_norm"),
    "openbookqa": _mc(lambda s: s.question, "acc_norm"),
    "winogrande": _winogrande,
    "boolq": _yesno(_boolq_context),
    "social_iqa": _mc(lambda s: f"Q: {s.context} {s.question}\nA:", "acc"),
    "truthfulqa": _mc(lambda s: f"{TRUTHFULQA_PRIMER}\n\nQ: {s.question}\nA:", "acc"),
    "mmlu": _mc(_mmlu_context, "acc"),
    "qa": _auto_mc,
}

#: dataset adapter -> its format (an adapter not listed, and hub / local / questions data, use "qa").
ADAPTER_FORMATS: dict[str, str] = {
    "arc_easy": "arc",
    "arc_challenge": "arc",
    "hellaswag": "hellaswag",
    "piqa": "piqa",
    "winogrande": "winogrande",
    "boolq": "boolq",
    "social_iqa": "social_iqa",
    "truthfulqa": "truthfulqa",
    "mmlu": "mmlu",
}


def format_of(adapter: str | None, cloze_format: str | None = None) -> str:
    """The cloze format of a dataset: its conf's ``cloze_format`` when set, else its adapter's
    (``ADAPTER_FORMATS``), else "qa" (question -> option text, or yes / no)."""
    name = cloze_format or ADAPTER_FORMATS.get(adapter or "", "qa")
    if name not in FORMATS:
        raise ValueError(f"cloze_format={name!r} is not valid; valid choices: {', '.join(FORMATS)}")
    return name


def cloze_question(sample: Sample, fmt: str) -> ClozeQuestion:
    """The log-likelihood requests of ``sample`` in format ``fmt`` (a yes/no sample of a mixed
    questions file always gets the yes/no continuations)."""
    if fmt not in FORMATS:
        raise ValueError(f"cloze format {fmt!r} is not valid; valid choices: {', '.join(FORMATS)}")
    if sample.task not in ("mc", "yesno"):
        raise DataError(f"sample {sample.id!r}: task {sample.task!r} has no options to score; cloze is for mc, yesno")
    return FORMATS[fmt](sample)
