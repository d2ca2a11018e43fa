"""Answer extraction, correctness and verbalized-confidence parsing for model outputs.

Where this sits in the flow: a backend generated text for a prompt from ``jobs/prompts.py``;
:func:`extract` turns that text into a normalized answer (the same normalization as the gold in
``jobs/datasets``), :func:`is_correct` compares it with ``Sample.gold``, and :func:`parse_confidence`
reads a 0-100 verbal confidence. Pure functions, no model code.

Policies:
- ``strict``:   only the explicit "The answer is X" the prompts ask for (case-insensitive; the last
                occurrence that parses for the task). Occurrences right after a quote mark are skipped
                so that an echoed instruction ('End with "The answer is X"') is not read as an answer.
- ``flexible``: strict first, then per-task fallbacks (see ``_FALLBACKS``).

``EXTRACTION_VERSION`` is part of cache / result keys: bump it whenever a rule here changes.
"""
from __future__ import annotations

import math
import re
from decimal import Decimal

from jobs.datasets.base import RowError
from jobs.datasets.base import canonical_number as gold_number
from jobs.types import Sample

EXTRACTION_VERSION = "v1"
POLICIES: tuple[str, ...] = ("strict", "flexible")

# "the answer is", "my final answer is", "The correct answer is:" ...
_ANSWER_IS = re.compile(r"\banswer\s+is\s*:?\s*", re.I)
_QUOTES = "\"'“”‘’`"
_QUOTED_BEFORE = re.compile(r"[\"“']\s*(?:(?:the|my|your|final|correct)\s+)*$", re.I)
_NUMBER = re.compile(r"(?<![\w.])(-)?\$?((?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+)(?:\s*/\s*(\d+)(?![\d.]))?")
_BOXED = re.compile(r"\\boxed\{([^{}]*)\}")
_YESNO = re.compile(r"\b(yes|no|true|false)\b", re.I)
# A choice letter: "(b)" / "(B)", a capital standing alone ("B", "B.", "B)"), or a lowercase letter
# only when followed by ")" "." ":" or the end of the line (a bare "a" is usually the article).
_LETTER = r"(?:\(\s*([A-Za-z])\s*\)|([A-Z])(?![\w'’])|([a-z])(?=[).:]|\s*$))"
_SPAN_LETTER = re.compile(r"^(?:[Oo]ption\s+|[Cc]hoice\s+)?" + _LETTER)
# "Answer: (C) Paris", "option B", "the answer would be B" (keywords in any usual case, letter case kept)
_MARKER = re.compile(
    r"\b(?:[Aa]nswer|ANSWER|[Oo]ption|OPTION|[Cc]hoice|CHOICE)\s*(?:is|would be|should be)?\s*:?[ \t]*"
)
_MARKER_END = re.compile(r"\s*(?:$|[.,;:!?)\]])")
_PAREN_LETTER = re.compile(r"\(\s*([A-Za-z])\s*\)")
_LINE_LETTER = re.compile(r"^\s*([A-Z])\s*(?:[.):]|$)", re.M)
_BARE_MARKER_LINE = re.compile(r"^\s*\(?\s*([A-Za-z])\s*\)?\s*[.):]?\s*$")
# Echoes of the prompt's own wording, removed before the fallbacks: 'End with "The answer is X"',
# and for yes/no questions "yes or no" / "True or False".
_ECHOES = re.compile(r"[\"“][^\"”\n]*answer is[^\"”\n]*[\"”]")
_YESNO_ECHOES = re.compile(r"\byes\s*(?:or|/)\s*no\b|\btrue\s*(?:or|/)\s*false\b", re.I)
# Confidence statements: "Confidence: 85%", "confidence level is 0.9", "I am 85% sure / confident",
# "8 out of 10". Also removed before the numeric fallback so "Confidence: 85%" is not read as the answer.
_PROB = r"(\d+(?:\.\d+)?|\.\d+)\s*(%|/\s*\d+(?:\.\d+)?|out\s+of\s+\d+(?:\.\d+)?)?"
_CONFIDENCE_AFTER = re.compile(r"\bconfidence\b[^\d\n]{0,20}?" + _PROB, re.I)
_CONFIDENCE_BEFORE = re.compile(_PROB + r"\s*(?:sure|certain|confiden\w*)", re.I)
_BARE_NUMBER = re.compile(r"(?<![\w.])" + _PROB)


# ----------------------------------------------------------------------------------------------
# Normalization shared with the gold side
# ----------------------------------------------------------------------------------------------

def canonical_number(text: str) -> str | None:
    """"$1,234.50" -> "1234.5", "39.0" -> "39", "-7" -> "-7" (the gold normalization of
    ``jobs.datasets.base.canonical_number``); None if not a finite number."""
    try:
        return gold_number(text.strip().replace("$", "").rstrip("%"))
    except RowError:
        return None


def normalize_freeform(text: str) -> str:
    """Lowercase, collapse whitespace, strip surrounding punctuation and quotes."""
    text = re.sub(r"\s+", " ", text.strip().lower())
    return text.strip(" .,;:!?()[]{}*" + _QUOTES)


def _yes_no_word(word: str) -> str:
    return "yes" if word.lower() in ("yes", "true") else "no"


# ----------------------------------------------------------------------------------------------
# Per-task parsing of the span after "The answer is"
# ----------------------------------------------------------------------------------------------

def _number(match: re.Match | None) -> str | None:
    """The canonical value of a _NUMBER match; a simple fraction "3/4" becomes "0.75"."""
    if match is None:
        return None
    sign, digits, denominator = match.groups()
    value = canonical_number((sign or "") + digits)
    if value is None or denominator is None or int(denominator) == 0:
        return value
    return canonical_number(str(Decimal(value) / Decimal(denominator)))


def _first_number(text: str) -> str | None:
    return _number(_NUMBER.search(text))


def _last_number(text: str) -> str | None:
    matches = list(_NUMBER.finditer(text))
    return _number(matches[-1] if matches else None)


def _letter(match: re.Match) -> str:
    return next(g for g in match.groups() if g).upper()


def _match_option_text(text: str, sample: Sample, whole: bool) -> str | None:
    """The letter of the unique option whose text equals (whole=True) or starts (whole=False) ``text``
    after normalization; the longest wins when one option's text extends another's."""
    norm = normalize_freeform(text)
    if not norm:
        return None
    labels = sample.choice_labels()
    options = [(normalize_freeform(c), label) for c, label in zip(sample.choices, labels)]
    if whole:
        hits = [(o, label) for o, label in options if o and o == norm]
    else:
        hits = [(o, label) for o, label in options if o and re.match(re.escape(o) + r"(?!\w)", norm)]
    return _unique_longest(hits)


def _unique_longest(hits: list[tuple[str, str]]) -> str | None:
    if not hits:
        return None
    longest = max(hits, key=lambda h: len(h[0]))
    # several hits are fine only if they are all parts of the longest ("bank" within "bank vault")
    if all(h[0] in longest[0] for h in hits) and sum(h[0] == longest[0] for h in hits) == 1:
        return longest[1]
    return None


def _span_choice(span: str, sample: Sample) -> str | None:
    """The choice named at the start of ``span``.

    A clear letter marker ("(C) ...", "C", "C.", "C) Paris") wins; otherwise an option's text at the
    start of the span ("A tree removes a gas", "I have no comment." are options, not letters A / I);
    otherwise a bare capital letter ("C because ...")."""
    span = span.strip().lstrip(_QUOTES)
    match = _SPAN_LETTER.match(span)
    letter = _letter(match) if match and _letter(match) in sample.choice_labels() else None
    # "(C) ...", "C", "C.", "C) ...", "C: ...": a letter even if some option's text is "C" (the prompt asks for letters)
    if letter is not None and (match.group(1) or _MARKER_END.match(span, match.end())):
        return letter
    by_text = _match_option_text(span, sample, whole=False)
    return by_text if by_text is not None else letter


def _span_answer(span: str, sample: Sample) -> str | None:
    """The answer written right after "The answer is" (``span`` = rest of that line)."""
    if sample.task == "numeric":
        return _first_number(span)
    if sample.task == "mc":
        return _span_choice(span, sample)
    if sample.task == "yesno":
        match = _YESNO.search(span)
        return _yes_no_word(match.group(1)) if match else None
    # freeform: up to the end of the first sentence
    answer = normalize_freeform(re.split(r"[.!?](?:\s|$)", span, maxsplit=1)[0])
    return answer or None


def _strict(text: str, sample: Sample) -> str | None:
    for match in reversed(list(_ANSWER_IS.finditer(text))):
        if _QUOTED_BEFORE.search(text, 0, match.start()):
            continue  # an echoed instruction: 'End with "The answer is X"'
        rest = text[match.end() :]
        span = rest.split("\n", 1)[0]
        if not span.strip():  # "The answer is:\n42"
            span = rest.strip().split("\n", 1)[0]
        answer = _span_answer(span, sample)
        if answer is not None:
            return answer
    return None


# ----------------------------------------------------------------------------------------------
# Flexible fallbacks, per task
# ----------------------------------------------------------------------------------------------

def _numeric_fallback(text: str, sample: Sample) -> str | None:
    boxed = _BOXED.findall(text)
    if boxed:
        number = _first_number(boxed[-1])
        if number is not None:
            return number
    without_confidence = _CONFIDENCE_BEFORE.sub(" ", _CONFIDENCE_AFTER.sub(" ", text))
    return _last_number(without_confidence)


def _mc_fallback(text: str, sample: Sample) -> str | None:
    valid = sample.choice_labels()
    # 0. the whole reply is one option's text (unless it is a bare letter: "B" means B, even if an option is "B")
    if not _BARE_MARKER_LINE.match(text):
        whole = _match_option_text(text, sample, whole=True)
        if whole is not None:
            return whole
    # 1. "Answer: (C) Paris", "option B", "the answer would be B": the last valid one
    for marker in reversed(list(_MARKER.finditer(text))):
        letter = _span_choice(text[marker.end() :].split("\n", 1)[0], sample)
        if letter is not None:
            return letter
    # 2. standalone markers "(B)", a line starting "B." / "B)" / "B" (also "**B**" once bold is gone):
    #    accepted if they name one letter only, or if the last non-empty line is nothing but a marker
    #    (an echoed option list "A. x / B. y / ..." names several letters and is not an answer)
    standalone = [m.group(1).upper() for m in _PAREN_LETTER.finditer(text)]
    standalone += [m.group(1) for m in _LINE_LETTER.finditer(text)]
    standalone = [letter for letter in standalone if letter in valid]
    if len(set(standalone)) == 1:
        return standalone[0]
    lines = [line for line in text.splitlines() if line.strip()]
    if standalone and lines:
        last = _BARE_MARKER_LINE.match(lines[-1])
        if last and last.group(1).upper() in valid:
            return last.group(1).upper()
    # 3. exactly one option's text occurs in the reply
    norm = normalize_freeform(text)
    hits = [
        (o, label)
        for o, label in ((normalize_freeform(c), label) for c, label in zip(sample.choices, valid))
        if o and re.search(r"(?<!\w)" + re.escape(o) + r"(?!\w)", norm)
    ]
    return _unique_longest(hits)


def _yesno_fallback(text: str, sample: Sample) -> str | None:
    match = _YESNO.search(_YESNO_ECHOES.sub(" ", text))
    return _yes_no_word(match.group(1)) if match else None


def _freeform_fallback(text: str, sample: Sample) -> str | None:
    marked = re.findall(r"(?im)\banswer\s*:\s*(.+)$", text)
    if marked:
        answer = normalize_freeform(marked[-1])
        if answer:
            return answer
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        return None
    last = lines[-1].rsplit(":", 1)[-1]
    return normalize_freeform(last) or None


_FALLBACKS = {
    "numeric": _numeric_fallback,  # \boxed{X}, else the last number (confidence statements removed)
    "mc": _mc_fallback,  # "Answer: B" / "option B", a lone "(B)" or "B." line, else a unique option text
    "yesno": _yesno_fallback,  # the first yes / no / true / false word
    "freeform": _freeform_fallback,  # "Answer: X", else the last line (after its last ":")
}


def extract(text: str, sample: Sample, policy: str = "flexible") -> str | None:
    """The normalized answer in a model output, or None.

    Returns a canonical number string (numeric), a valid choice letter of ``sample`` (mc),
    "yes"/"no" (yesno) or a lowercased stripped string (freeform).
    """
    if policy not in POLICIES:
        raise ValueError(f"unknown extraction policy {policy!r}; valid: {', '.join(POLICIES)}")
    if sample.task not in _FALLBACKS:
        raise ValueError(f"sample {sample.id!r}: unknown task {sample.task!r}; valid: {', '.join(_FALLBACKS)}")
    if not text:
        return None
    text = text.replace("**", "").replace("__", "")  # markdown bold around answers
    answer = _strict(text, sample)
    if answer is None and policy == "flexible":
        answer = _FALLBACKS[sample.task](_ECHOES.sub(" ", text), sample)
    return answer


def is_correct(pred: str | None, sample: Sample) -> bool:
    """Whether a normalized prediction matches ``sample.gold``: numbers as floats within 1e-6,
    mc letters and yes/no exactly, freeform after :func:`normalize_freeform` against gold or aliases.
    An unlabelled sample (empty gold) is never correct."""
    if pred is None or sample.gold == "":
        return False
    if sample.task == "numeric":
        number = canonical_number(pred)
        if number is None:
            return False
        return math.isclose(float(number), float(sample.gold), rel_tol=0.0, abs_tol=1e-6)
    if sample.task == "mc":
        return pred.strip().upper() == sample.gold
    if sample.task == "yesno":
        word = pred.strip().lower()
        return word in ("yes", "no", "true", "false") and _yes_no_word(word) == sample.gold
    if sample.task == "freeform":
        return normalize_freeform(pred) in {normalize_freeform(a) for a in (sample.gold, *sample.aliases)}
    raise ValueError(f"sample {sample.id!r}: unknown task {sample.task!r}; valid: {', '.join(_FALLBACKS)}")


# ----------------------------------------------------------------------------------------------
# Verbalized confidence
# ----------------------------------------------------------------------------------------------

def _to_probability(number: str, unit: str | None) -> float | None:
    value = float(number)
    unit = re.sub(r"\s+|out\s*of", lambda m: "" if m.group(0).isspace() else "/", unit or "")
    if unit.startswith("/"):
        denominator = float(unit[1:])
        if denominator <= 0 or value > denominator:
            return None
        return value / denominator
    if unit == "%" or value > 1 or "." not in number:
        # "85", "85%", and also "1" (read as 1 %, not certainty: only "1.0" is a probability)
        return value / 100 if value <= 100 else None
    return value  # "0.85", "1.0"


def parse_confidence(text: str) -> float | None:
    """The verbalized confidence in [0, 1], or None.

    "Confidence: 85%", "85", "0.85", "85/100", "I am 90% confident". In a one-stage output the number
    after "confidence" wins (the answer's own number is ignored); in a bare reply, the first number.
    Values above 100 (or above the denominator) give None.
    """
    if not text:
        return None
    text = text.replace("**", "")
    for pattern in (_CONFIDENCE_AFTER, _CONFIDENCE_BEFORE):
        matches = list(pattern.finditer(text))
        if matches:
            return _to_probability(matches[-1].group(1), matches[-1].group(2))
    if re.search(r"(?i)confiden", text):
        return None  # "Confidence: high": a word, not a number; do not read the answer's number
    # A bare reply; in a one-stage output drop "The answer is X" first so X is not taken for it.
    rest = re.sub(r"(?i)\banswer\s+is\s*:?\s*\S+", " ", text)
    match = _BARE_NUMBER.search(rest)
    return _to_probability(match.group(1), match.group(2)) if match else None
