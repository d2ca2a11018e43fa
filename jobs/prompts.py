"""Zero-shot prompt templates: a Sample -> chat messages (list of {"role", "content"} dicts).

Where this sits in the flow: dataset adapters give normalized Samples; a backend renders these
messages with the model's chat template (or :func:`plain_prompt` when it has none) and generates;
``jobs/answers.py`` extracts the answer and the verbalized confidence from the output.

Every prompt asks the model to end with ``The answer is X`` so that the strict extraction policy
works for all tasks. Wording is kept short on purpose: the smallest SLM has 135M parameters.

``PROMPT_VERSION`` is part of every cache key: bump it whenever any wording here changes (and when
an adapter changes how it frames ``Sample.question``, e.g. the HellaSwag / WinoGrande / PIQA lead-ins,
or when a stage changes what it puts into a prompt).

History (``PROMPT_VERSION`` for all stages; a stage's own version in ``STAGE_PROMPT_VERSIONS``):
  v1  first version.
  ptrue / verbal_2s / verbal_1s: 2  p(True) and verbal 2-stage show the model's whole answer (``shown_answer``: its raw output up
      to an invented follow-up question), no longer its first 300 characters, which cut the final
      "The answer is X" off long math answers; an answer too long for the prompt budget loses its
      middle, never its end (``jobs.stages.base.fit_answer``). ``ptrue_messages`` shows that text as it
      is: the mc option-text expansion it documented never ran (it was given raw text, not a letter).
      A verbal 1-stage output that states no confidence is unparsed (NaN), no longer read from its
      bare numbers ("The answer to this question is 1." gave a confidence of 1%).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from jobs.types import Sample

PROMPT_VERSION = "v1"

Messages = list[dict[str, str]]

# What X is in "The answer is X", per task.
_ANSWER_SLOT = {
    "numeric": "a number",
    "mc": "the letter of the correct option",
    "yesno": "yes or no",
    "freeform": "your answer",
}
_INSTRUCTION = {
    "numeric": 'Solve the problem. End your reply with "The answer is X", where X is a number.',
    "mc": 'Choose the correct option. End your reply with "The answer is X", where X is the option letter.',
    "yesno": 'Answer yes or no. End your reply with "The answer is yes" or "The answer is no".',
    "freeform": 'End your reply with "The answer is X", where X is your answer.',
}
VERBAL_2S_QUESTION = "How confident are you that your answer is correct? Reply with a number from 0 to 100."
PTRUE_QUESTION = "Is the proposed answer true or false? Answer with one word: True or False."


def _task(sample: Sample) -> str:
    if sample.task not in _INSTRUCTION:
        raise ValueError(f"sample {sample.id!r}: unknown task {sample.task!r}; valid: {', '.join(_INSTRUCTION)}")
    return sample.task


def question_block(sample: Sample) -> str:
    """The passage (if any), the question and, for mc, one "A. text" line per option."""
    parts = []
    if sample.context:
        parts.append(f"Passage: {sample.context}\n")
    parts.append(f"Question: {sample.question}")
    if sample.choices:
        parts.append("Options:")
        parts.extend(f"{label}. {text}" for label, text in zip(sample.choice_labels(), sample.choices))
    return "\n".join(parts)


def answer_messages(sample: Sample) -> Messages:
    """Ask for an answer ending in "The answer is X"."""
    return [{"role": "user", "content": f"{question_block(sample)}\n\n{_INSTRUCTION[_task(sample)]}"}]


def verbal_1s_messages(sample: Sample) -> Messages:
    """Ask for the answer and a 0-100 confidence in one output: "The answer is X. Confidence: N%"."""
    slot = _ANSWER_SLOT[_task(sample)]
    instruction = (
        f'End your reply with "The answer is X. Confidence: N%", where X is {slot} '
        "and N (0 to 100) is how confident you are that your answer is correct."
    )
    return [{"role": "user", "content": f"{question_block(sample)}\n\n{instruction}"}]


# A line that starts like one of our prompts' fields: the model went on to invent a new question.
_FOLLOW_UP = re.compile(r"\n[ \t]*(?:Question|Passage|Options)[ \t]*:")


def shown_answer(raw_output: str) -> str:
    """The model's answer as p(True) and verbal 2-stage show it back: the whole raw output, up to
    the first line that starts an invented follow-up ("Question:", "Passage:", "Options:", as in
    our prompts), stripped. Nothing else is cut here; ``jobs.stages.base.fit_answer`` shortens it (in
    its middle) only when the prompt would not fit the model's budget."""
    text = raw_output or ""
    m = _FOLLOW_UP.search(text)
    return (text[: m.start()] if m and text[: m.start()].strip() else text).strip()


def verbal_2s_followup(sample: Sample, answer_text: str) -> Messages:
    """The two-stage verbal confidence conversation: the answer prompt, the model's own answer
    (``answer_text``: ``shown_answer`` of its raw output), then the confidence question."""
    return [
        *answer_messages(sample),
        {"role": "assistant", "content": answer_text},
        {"role": "user", "content": VERBAL_2S_QUESTION},
    ]


def ptrue_messages(sample: Sample, proposed: str) -> Messages:
    """Kadavath et al. (2022) P(True): show the question and a proposed answer and ask True/False.

    ``proposed`` is shown as given: the stage passes the model's whole answer (``shown_answer`` of
    its greedy raw output, reasoning and "The answer is X" included), as Kadavath et al. show the
    sampled answer. For mc the options are listed in the question block above it, so a letter in
    the answer can be read against them. The backend reads the next-token probabilities of the
    whole-word spellings of True / False.
    """
    _task(sample)
    content = f"{question_block(sample)}\n\nProposed answer: {proposed}\n\n{PTRUE_QUESTION}"
    return [{"role": "user", "content": content}]


# ---------------------------------------------------------------- constrained answers
#: ``decoding.answer_mode``: ``generate`` (decode an answer), ``constrained`` (score the option
#: letters / yes-no as the next token after "The answer is") or ``cloze`` (score each option's text
#: as the continuation of the question, as lm-evaluation-harness does: ``jobs/cloze.py``).
ANSWER_MODES: tuple[str, ...] = ("generate", "constrained", "cloze")
#: Tasks whose answer is one of a few options, so a constrained answer is possible.
CONSTRAINED_TASKS: tuple[str, ...] = ("mc", "yesno")
#: Start of the model's turn in constrained mode; the next token is the option. It is part of the
#: keys of constrained units (their ``answer_prefix`` param), so changing it recomputes only them.
ANSWER_PREFIX = "The answer is"


@dataclass(frozen=True)
class AnswerModes:
    """How the samples of each option task answer (an ``ANSWER_MODES`` name per task of
    ``CONSTRAINED_TASKS``; tasks without options always generate): the one shape ``answer_mode``
    has from the config to the stage.

    Resolved once from the config (``resolve``: a dataset conf's own ``answer_mode`` over the grid's
    ``decoding.answer_mode``, each one mode or a mapping task -> mode); a gen unit's params record it
    as ``param(task)`` (the value its key has always hashed), and the stage reads it back with
    ``of_params``."""

    mc: str = "generate"
    yesno: str = "generate"

    @classmethod
    def of(cls, setting: Any) -> AnswerModes:
        """From a config value: one mode for every option task, a mapping task -> mode (missing tasks
        generate), or None (generate)."""
        if isinstance(setting, Mapping):
            return cls(**{t: setting.get(t, "generate") for t in CONSTRAINED_TASKS})
        return cls(**dict.fromkeys(CONSTRAINED_TASKS, setting or "generate"))

    @classmethod
    def resolve(cls, dataset_mode: Any, grid_mode: Any) -> AnswerModes:
        """A dataset's modes: its conf's own ``answer_mode`` when set, else the grid's."""
        return cls.of(dataset_mode or grid_mode)

    @classmethod
    def of_params(cls, params: Mapping[str, Any]) -> AnswerModes | None:
        """A gen unit's modes, read back from its params; None when it generates every sample (its
        params then carry no ``answer_mode``: keys as before answer modes existed)."""
        value = params.get("answer_mode")
        return None if value is None else cls.of(value)

    def mode(self, task: str) -> str:
        """The answer mode of a sample of ``task``."""
        return getattr(self, task) if task in CONSTRAINED_TASKS else "generate"

    def param(self, task: str) -> str | dict[str, str] | None:
        """What the params of a gen unit over a dataset of ``task`` record: None when every sample
        generates, the mode of a single-task dataset, {task: mode} of the option tasks that do not
        generate for a mixed one ("mixed": a questions file whose rows carry their own tasks)."""
        if task == "mixed":
            return {t: m for t in CONSTRAINED_TASKS if (m := self.mode(t)) != "generate"} or None
        mode = self.mode(task)
        return None if mode == "generate" else mode

    def used(self, task: str) -> set[str]:
        """The modes other than generate that samples of a dataset of ``task`` answer in."""
        tasks = CONSTRAINED_TASKS if task == "mixed" else (task,)
        return {self.mode(t) for t in tasks} - {"generate"}


def answer_mode(setting: Any, task: str) -> str:
    """The answer mode of a sample of ``task`` under a ``decoding.answer_mode`` value (``AnswerModes.of``)."""
    return AnswerModes.of(setting).mode(task)


def answer_options(sample: Sample) -> list[str]:
    """What a constrained answer chooses from: the option letters (mc) or yes / no."""
    if sample.task == "mc":
        return list(sample.choice_labels())
    if sample.task == "yesno":
        return ["yes", "no"]
    raise ValueError(
        f"sample {sample.id!r}: task {sample.task!r} has no options; constrained answers exist "
        f"for {', '.join(CONSTRAINED_TASKS)}"
    )


def with_prefix(rendered: str, prefix: str) -> str:
    """The rendered prompt followed by the answer prefix: directly after whitespace (a chat
    template's assistant turn ends in a newline), else after one space ("Answer: The answer is")."""
    if not prefix or not rendered or rendered[-1].isspace():
        return rendered + prefix
    return f"{rendered} {prefix}"


def constrained_output(option: str, prefix: str = ANSWER_PREFIX) -> str:
    """The raw output recorded for a constrained answer ("The answer is B."), so extraction and
    judging treat it like a generated one."""
    return f"{prefix} {option}."


def plain_prompt(messages: Messages) -> str:
    """Render messages for a model without a chat template.

    A system message comes first as plain text, each user turn is followed by "Answer:", and each
    assistant turn fills that slot; the result ends with "Answer:" when the last turn is the user's,
    so the model continues with its answer.
    """
    out = ""
    for message in messages:
        role, content = message["role"], message["content"]
        if role == "system":
            out += f"{content}\n\n"
        elif role == "user":
            out += f"{content}\nAnswer:"
        elif role == "assistant":
            out += f" {content.strip()}\n\n"
        else:
            raise ValueError(f"unknown message role {role!r}; valid: system, user, assistant")
    return out


#: A stage's own prompt version, for a wording change of one stage's template alone (e.g.
#: ``{"ptrue": "2"}`` after changing ``ptrue_messages``): that stage's units are keyed by it on top
#: of ``PROMPT_VERSION`` (``orchestrator.plan.stage_prompt_version``), so only they, and what reads
#: them, are recomputed. A change to ``answer_messages`` / ``question_block`` (read by every stage)
#: bumps ``PROMPT_VERSION`` instead.
STAGE_PROMPT_VERSIONS: dict[str, str] = {
    # the whole answer shown, the 1-stage confidence parse (see History above): greedy, samples and
    # LLM passes of existing stores stay valid
    "ptrue": "2",
    "verbal_2s": "2",
    "verbal_1s": "2",
}
