"""Answer extraction, correctness and verbalized-confidence parsing for model outputs.

Where this sits in the flow: a backend generated text for a prompt from ``jobs/prompts.py``;
:func:`extract` turns that text into a normalized answer (the same normalization as the gold in
``jobs/datasets``), :func:`is_correct` compares it with ``Sample.gold``, and :func:`parse_confidence`
reads a 0-100 verbal confidence. :func:`extract_detail` says in addition which rule found the answer
and where it is in the text (``jobs/scoring.py`` records the rule per row and reads the answer's
token log-probability at that span). Pure functions, no model code.

Policies:
- ``strict``:   only the explicit "The answer is X" the prompts ask for (case-insensitive; the last
                occurrence that parses for the task). Occurrences right after a quote mark are skipped
                so that an echoed instruction ('End with "The answer is X"') is not read as an answer.
- ``flexible``: strict first, then per-task fallbacks (see ``_FALLBACKS``).

Before either policy (v2):
- bold markers ("**", "__") are blanked, not deleted, so character offsets stay those of the output;
- the text is cut at an invented follow-up question: a line starting "Question:", "Q:", "Problem:"
  (optionally numbered) after some answer text; an echoed question at the very start is kept.

What an answer is, per task (v2):
- numeric: the first number of the span after "The answer is" (strict) or the last number of the
  text (flexible fallback). A number is digits ("1,234.5", "$18", "-7"), a fraction ("3/4" -> 0.75),
  number words ("eight", "twenty-five", "three hundred and five"; a lone "one" counts only right
  after "The answer is"), or LaTeX (``\\boxed{}``, ``\\frac{3}{4}``; non-numeric LaTeX such as
  ``\\sqrt{2}`` is kept as text for math-verify). An arithmetic chain counts as its result: the
  value after the last "=" ("5 + 3 = 8" -> 8); without "=", right after "The answer is" the
  expression's value ("5 + 3" -> 8), in running text its last number.
- mc: a letter ("(B)", "B.", "option B") or an option's text. Lines that list several letters
  (echoed or reshuffled option lists, "A.\\nB.\\nC.") name none of them, and a line "A. <text>"
  names A only when the text is option A's (else it is a Q/A prefix or list item: "A: ...",
  "A. The answer to ..."). "The answer to your question is B" counts in the flexible policy.
- freeform: the first sentence of the answer; the prompt's placeholder X ("The answer is X"), another
  question, a question mark line or a sentence of more than six words as last line are no answer.
- negation: "not X" is not the answer X. After "The answer is not X" the answer is what follows a
  contrast (", it is Y", "but Y"), else none; a negated option's text ("It is not a lever.") is no
  mention of that option; for yes/no a negated word counts as its opposite ("It is not true" -> no)
  unless a later yes/no word follows ("not no, it is yes" -> yes). "no" followed by a noun is a
  determiner ("no doubt", "no one"), not the answer no.

Hedges and number forms (v3, issue 17):
- an answer hedged across options names none: "The answer is A, B, C, or D.", "(A) a pulley or (C)
  a wheel", "C/D", "a pulley or a wheel", "5 or 6", a range "5-10", "yes and no", "no, yes"; right
  after "The answer is" such a hedge (and a list of lettered lines after "The answer is:") is a
  committed statement naming nothing: no earlier statement and no fallback is read instead. An
  echoed instruction ('"yes" or "no"', quoted or not) is blanked; a self-correction ("The answer is
  A. No wait, the answer is B.") takes the last statement, as before.
- numbers: "5-3" is 2 like "5 - 3" (an unspaced "-" with a larger second number is a range);
  mixed numbers "3 1/2" = 3.5; spaced thousands "1 000 000"; scientific notation "1.5e3",
  "1.5 x 10^3"; a time "3:30" or a ratio "3:2" is no number.

``EXTRACTION_VERSION`` is part of cache / result keys: bump it whenever a rule here changes.
"""

from __future__ import annotations

import math
import re
import threading
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from functools import lru_cache

from jobs.datasets.base import RowError
from jobs.datasets.base import canonical_number as gold_number
from jobs.types import Sample

EXTRACTION_VERSION = "v3"
POLICIES: tuple[str, ...] = ("strict", "flexible")


@dataclass(frozen=True)
class Extraction:
    """What :func:`extract_detail` found in one output.

    answer: the normalized answer (as :func:`extract` returns it), or None.
    rule:   the rule that found it: "strict:the_answer_is", "flexible:<fallback>" (see
            ``_FALLBACKS``), or "none" when nothing was found.
    span:   (start, end) character offsets of the matched answer in the output text (the letter of
            "(B)", the option text, the number, the yes/no word), or None when there is no answer.
    """

    answer: str | None
    rule: str
    span: tuple[int, int] | None


NO_ANSWER = Extraction(None, "none", None)

# (answer, start, end): offsets relative to the string the helper was given
_Hit = tuple[str, int, int]
# what a span helper returns for an answer hedged across options ("A or B", "5 or 6", "yes and no"):
# a committed statement that names none, so no earlier statement or fallback is read instead
_HEDGED: _Hit = ("", -1, -1)

# "the answer is", "my final answer is", "The correct answer is:" ...
_ANSWER_IS = re.compile(r"\banswer\s+is\s*:?\s*", re.IGNORECASE)
_QUOTES = "\"'“”‘’`"
_QUOTED_BEFORE = re.compile(r"[\"“']\s*(?:(?:the|my|your|final|correct)\s+)*$", re.IGNORECASE)
_BOLD = re.compile(r"\*\*|__")
# an invented follow-up ("Question: ...", "Q2:", "### Problem 3:") on its own line
_FOLLOWUP = re.compile(r"^[ \t#>*]*(?:(?i:question|problem)|Q)[ \t]*\d*[ \t]*[:.)]", re.MULTILINE)
# A number: digits with "," or spaced ("1 000 000") thousands, decimals, a "/" fraction; never part
# of a time or a ratio ("3:30", "3:2": the lookarounds on ":").
_NUMBER = re.compile(
    r"(?<![\w.])(?<!\d:)(-)?\$?"
    r"((?:\d{1,3}(?:,\d{3})+|\d{1,3}(?:[ \u00a0\u202f]\d{3})+(?![\d,]|[ \t]*/)|\d+)(?:\.\d+)?|\.\d+)"
    r"(?!\d|:\d)(?:\s*/\s*(\d+)(?!\d|\.\d|:\d))?"
)
# "3 1/2" (a mixed number, 3.5) and "1.5e3" / "1.5 x 10^3" (scientific notation), after a number
_MIXED = re.compile(r"[ \t]+(?:and[ \t]+)?(\d+)[ \t]*/[ \t]*(\d+)(?!\d|\.\d|:\d)")
_EXPONENT = re.compile(
    r"[eE]([+-]?\d+)(?!\w|\.\d)|[ \t]*(?:[x×*]|\\times|\\cdot)[ \t]*10[ \t]*\^[ \t]*\{?[ \t]*([+-]?\d+)[ \t]*\}?"
)
_OPERATOR = re.compile(r"\s*([-+*/×÷=]|\\times|\\cdot|\\div|(?<=\s)x(?=\s))\s*")
_YESNO = re.compile(r"\b(yes|no|true|false)\b", re.IGNORECASE)
# "no" + a noun is a determiner ("no doubt", "no one"); "no because / no, the / no it" is the answer
_NO_DETERMINER = re.compile(
    r"[ \t]+(?!(?:it|they|he|she|i|that|this|the|there|we|you|because|but|not|since|as|so|and|or)\b)[a-z]"
)
_NEGATED_BEFORE = re.compile(r"(?:\b(?:not|never)|n[’']t)\s+(?:(?:a|an|the)\s+)?$", re.IGNORECASE)
_NEGATED_LEAD = re.compile(r"(?:not|never)\s+", re.IGNORECASE)
_CONTRAST = re.compile(
    r"(?:[,;]|\bbut\b|\brather\b|\binstead\b)\s*(?:(?:but|rather|instead)\s+)?"
    r"(?:(?:it|the answer)\s+(?:is|would be)\s+|it[’']s\s+)?:?\s*",
    re.IGNORECASE,
)
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
# a line starting "B" / "B." / "B)" / "B:", and the rest of that line (see _line_letters)
_LINE_LETTER = re.compile(r"^[ \t]*([A-Z])[ \t]*(?:([.):])[ \t]*([^\n]*)|$)", re.MULTILINE)
_BARE_MARKER_LINE = re.compile(r"^\s*\(?\s*([A-Za-z])\s*\)?\s*[.):]?\s*$")
# Echoes of the prompt's own wording, blanked before the fallbacks: 'End with "The answer is X"',
# and for yes/no questions "yes or no" / "True or False".
_ECHOES = re.compile(r"[\"“][^\"”\n]*answer\b[^\"”\n]{0,40}?\bis\b[^\"”\n]*[\"”]")
_YESNO_ECHOES = re.compile(
    r"\byes[\"”'’]?\s*(?:or|/)\s*[\"“'‘]?no\b|\btrue[\"”'’]?\s*(?:or|/)\s*[\"“'‘]?false\b", re.IGNORECASE
)
# Confidence statements: "Confidence: 85%", "confidence level is 0.9", "I am 85% sure / confident",
# "8 out of 10". Also blanked before the numeric fallback so "Confidence: 85%" is not read as the answer.
_PROB = r"(\d+(?:\.\d+)?|\.\d+)\s*(%|/\s*\d+(?:\.\d+)?|out\s+of\s+\d+(?:\.\d+)?)?"
_CONFIDENCE_AFTER = re.compile(r"\bconfidence\b[^\d\n]{0,20}?" + _PROB, re.IGNORECASE)
_CONFIDENCE_BEFORE = re.compile(_PROB + r"\s*(?:sure|certain|confiden\w*)", re.IGNORECASE)
_BARE_NUMBER = re.compile(r"(?<![\w.])" + _PROB)
_STRIP_CHARS = " .,;:!?()[]{}*" + _QUOTES


def _blank(pattern: re.Pattern, text: str) -> str:
    """``text`` with every match of ``pattern`` replaced by as many spaces (offsets unchanged)."""
    return pattern.sub(lambda m: " " * len(m.group(0)), text)


# ----------------------------------------------------------------------------------------------
# Normalization shared with the gold side
# ----------------------------------------------------------------------------------------------


def canonical_number(text: str) -> str | None:
    """ "$1,234.50" -> "1234.5", "39.0" -> "39", "-7" -> "-7" (the gold normalization of
    ``jobs.datasets.base.canonical_number``); None if not a finite number."""
    try:
        return gold_number(text.strip().replace("$", "").rstrip("%"))
    except RowError:
        return None


def normalize_freeform(text: str) -> str:
    """Lowercase, collapse whitespace, strip surrounding punctuation and quotes."""
    text = re.sub(r"\s+", " ", text.strip().lower())
    return text.strip(_STRIP_CHARS)


def _yes_no_word(word: str) -> str:
    return "yes" if word.lower() in ("yes", "true") else "no"


def _stripped(text: str, start: int, end: int, chars: str = _STRIP_CHARS + "\n\t") -> tuple[int, int]:
    """(start, end) of text[start:end] without the surrounding ``chars``."""
    while start < end and text[start] in chars:
        start += 1
    while end > start and text[end - 1] in chars:
        end -= 1
    return start, end


# ----------------------------------------------------------------------------------------------
# Numbers: digits, fractions, arithmetic chains, number words, LaTeX
# ----------------------------------------------------------------------------------------------


def _decimal_string(value: Fraction) -> str | None:
    """A Fraction as a canonical number string ("3/4" -> "0.75"; 1/3 to 28 digits)."""
    return canonical_number(str(Decimal(value.numerator) / Decimal(value.denominator)))


def _operand(match: re.Match) -> Fraction:
    sign, digits, denominator = match.groups()
    value = Fraction(Decimal(re.sub(r"[,\s]", "", digits)))
    if denominator is not None and int(denominator) != 0:
        value /= int(denominator)
    return -value if sign else value


def _operand_at(text: str, match: re.Match) -> tuple[Fraction, int, int]:
    """(value, start, end) of the number ``match`` (of _NUMBER) with what completes it: the fraction
    of a mixed number ("3 1/2" -> 3.5) and an exponent ("1.5e3", "1.5 x 10^3" -> 1500)."""
    value, end = _operand(match), match.end()
    if match.group(3) is None and match.group(2).isdigit():
        mixed = _MIXED.match(text, end)
        if mixed and 0 < int(mixed.group(1)) < int(mixed.group(2)):
            part = Fraction(int(mixed.group(1)), int(mixed.group(2)))
            value, end = (value - part if match.group(1) else value + part), mixed.end()
    if match.group(3) is None:
        exp = _EXPONENT.match(text, end)
        if exp and abs(int(exp.group(1) or exp.group(2))) <= 100:
            value, end = value * Fraction(10) ** int(exp.group(1) or exp.group(2)), exp.end()
    return value, match.start(), end


def _evaluate(values: list[Fraction], ops: list[str]) -> Fraction | None:
    """values[0] ops[0] values[1] ...: "*" and "/" before "+" and "-"; None on division by zero."""
    terms, signs, term = [], [], values[0]
    for op, v in zip(ops, values[1:]):
        if op in ("*", "/"):
            if op == "/" and v == 0:
                return None
            term = term * v if op == "*" else term / v
        else:
            terms.append(term)
            signs.append(op)
            term = v
    terms.append(term)
    total = terms[0]
    for op, t in zip(signs, terms[1:]):
        total = total + t if op == "+" else total - t
    return total


_OP_NAMES = {"×": "*", "x": "*", "\\times": "*", "\\cdot": "*", "÷": "/", "\\div": "/"}


def _chain(text: str, first: re.Match, evaluate: bool = True) -> tuple[str | None, int, int]:
    """The value of the arithmetic chain that starts with the number ``first``: the value after the
    last "=" ("5 + 3 = 8" -> 8). Without "=": the expression's value ("5 + 3" -> 8, "5-3" -> 2) if
    ``evaluate`` (right after "The answer is"), else its last number (in running text "10 + 12 + 12?"
    restates a question). Two numbers joined by an unspaced "-", the second larger ("5-10 minutes"),
    are a range: a hedge, no value (None). Another chain with an unspaced "-" (a date "2023-10-05")
    gives its first number. Returns (canonical value, start, end of the part that gave it)."""
    segments: list[tuple[list[tuple[Fraction, int, int]], list[str]]] = [([_operand_at(text, first)], [])]
    spaced_minus = True
    pos = segments[0][0][0][2]
    while (op := _OPERATOR.match(text, pos)) and (nxt := _NUMBER.match(text, op.end())):
        name = _OP_NAMES.get(op.group(1), op.group(1))
        operand = _operand_at(text, nxt)
        if name == "=":
            segments.append(([operand], []))
        else:
            if name == "-" and not (op.group(0)[0].isspace() and op.group(0)[-1].isspace()):
                spaced_minus = False
            segments[-1][0].append(operand)
            segments[-1][1].append(name)
        pos = operand[2]
    if (op := _OPERATOR.match(text, pos)) and text.startswith("(", op.end()) and op.group(1) != "=":
        return None, segments[0][0][0][1], pos  # "1000 * (1 + 1/1": an expression not evaluated here
    operands, ops = segments[-1]
    if len(segments) == 1 and ops == ["-"] and not spaced_minus and 0 <= operands[0][0] < operands[1][0]:
        return None, operands[0][1], operands[1][2]  # a range "5-10": names no one number
    if len(segments) == 1 and ops and (not evaluate or (not spaced_minus and ops != ["-"])):
        pick = operands[0] if evaluate else operands[-1]
        return _decimal_string(pick[0]), pick[1], pick[2]
    value = _evaluate([v for v, _, _ in operands], ops)
    return (None if value is None else _decimal_string(value)), operands[0][1], operands[-1][2]


_UNITS = {
    w: i
    for i, w in enumerate(
        [
            "zero",
            "one",
            "two",
            "three",
            "four",
            "five",
            "six",
            "seven",
            "eight",
            "nine",
            "ten",
            "eleven",
            "twelve",
            "thirteen",
            "fourteen",
            "fifteen",
            "sixteen",
            "seventeen",
            "eighteen",
            "nineteen",
        ]
    )
}
_TENS = {
    w: 10 * i
    for i, w in enumerate(["twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"], start=2)
}
_SCALES = {"thousand": 10**3, "million": 10**6, "billion": 10**9}
_WORD = "|".join(sorted([*_UNITS, *_TENS, "hundred", *_SCALES], key=len, reverse=True))
_WORD_RUN = re.compile(rf"\b(?:{_WORD})(?:(?:[ \t]+|-|[ \t]+and[ \t]+)(?:{_WORD}))*\b", re.IGNORECASE)
_WORD_TOKEN = re.compile(rf"\b(?:{_WORD}|and)\b", re.IGNORECASE)


def _word_number(match: re.Match) -> tuple[int, int, int]:
    """(value, start, end) of the number named by the leading words of a _WORD_RUN match:
    "twenty-five" -> 25, "three hundred and five" -> 305; "five two" -> 5 (the run splits)."""
    total = current = 0
    last = None  # kind of the previous word: unit / teen / ten / hundred / scale
    end = match.start()
    for tok in _WORD_TOKEN.finditer(match.group(0)):
        w = tok.group(0).lower()
        if w == "and":
            if last not in ("hundred", "scale"):
                break
            continue
        if w in _UNITS:
            kind = "unit" if _UNITS[w] < 10 else "teen"
            if last in ("unit", "teen") or (kind == "teen" and last == "ten"):
                break
            current += _UNITS[w]
        elif w in _TENS:
            kind = "ten"
            if last in ("unit", "teen", "ten"):
                break
            current += _TENS[w]
        elif w == "hundred":
            kind = "hundred"
            if last in ("hundred", "ten"):
                break
            current = (current or 1) * 100
        else:
            kind = "scale"
            if last == "scale":
                break
            total += (current or 1) * _SCALES[w]
            current = 0
        last = kind
        end = match.start() + tok.end()
    return total + current, match.start(), end


def _balanced(text: str, open_brace: int) -> int | None:
    """Index just past the "}" matching the "{" at ``open_brace``; None when unbalanced."""
    depth = 0
    for i in range(open_brace, len(text)):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return i + 1
    return None


_LATEX_START = re.compile(r"\\(?:boxed|fbox)\{|\\\(|\\\[|\$(?=[^$\n]*\\)|\\[dt]?frac\{")
_FRAC = re.compile(r"\\[dt]?frac\{([^{}]*)\}\{([^{}]*)\}")
_TEXT_CMD = re.compile(r"\\(?:text|mathrm|textbf|mbox|textit)\{([^{}]*)\}")
_CLOSERS = {"\\(": "\\)", "\\[": "\\]", "$": "$"}


def _latex_region(text: str, match: re.Match) -> tuple[str, int, int, int] | None:
    """(content, content start, content end, end of the closing delimiter) of the LaTeX construct
    that ``match`` (of _LATEX_START) opens; None when it is not closed."""
    opener = match.group(0)
    if "frac" in opener:  # the whole \frac{a}{b} is the content
        first = _balanced(text, match.end() - 1)
        second = _balanced(text, first) if first is not None and text[first : first + 1] == "{" else None
        return None if second is None else (text[match.start() : second], match.start(), second, second)
    if opener.endswith("{"):  # \boxed{...}
        close = _balanced(text, match.end() - 1)
        return None if close is None else (text[match.end() : close - 1], match.end(), close - 1, close)
    closer = _CLOSERS[opener]
    close = text.find(closer, match.end())
    return None if close < 0 else (text[match.end() : close], match.end(), close, close + len(closer))


def _unboxed(content: str) -> str:
    """The content of the last \\boxed{} in ``content`` (the whole of it without one)."""
    boxes = [m for m in _LATEX_START.finditer(content) if m.group(0) in ("\\boxed{", "\\fbox{")]
    region = _latex_region(content, boxes[-1]) if boxes else None
    return content if region is None else region[0]


def _plain_fraction(m: re.Match) -> str:
    a, b = m.group(1).strip(), m.group(2).strip()
    return f"{a}/{b}" if _NUMBER.fullmatch(a) and _NUMBER.fullmatch(b) else m.group(0)


def _latex_answer(content: str) -> str | None:
    """A LaTeX answer: its canonical number when it is one ("\\frac{3}{4}" -> "0.75",
    "18 \\text{ dollars}" -> "18"), else the LaTeX itself ("\\sqrt{2}", judged by math-verify)."""
    content = _unboxed(content).strip()
    s = _TEXT_CMD.sub(r" \1 ", content)
    for old, new in (
        ("\\left", ""),
        ("\\right", ""),
        ("\\!", ""),
        ("\\,", ""),
        ("\\;", ""),
        ("\\ ", " "),
        ("\\%", "%"),
        ("\\$", "$"),
        ("{,}", ","),
        ("\\times", "×"),
        ("\\cdot", "×"),
        ("\\div", "÷"),
    ):
        s = s.replace(old, new)
    s = _FRAC.sub(_plain_fraction, re.sub(r"\^\{?\\circ\}?", "", s))
    if "\\" not in s and "{" not in s:
        first = _NUMBER.search(s)
        if first:
            return _chain(s, first)[0]
    return content or None


# more digits than any answer has: runaway digits cut by the token limit ("1000000...") name no number
_MAX_DIGITS = 24


def _numbers(text: str, after_answer_is: bool) -> list[_Hit]:
    """Every number mentioned in ``text``, in order: LaTeX constructs, digit chains (one value per
    chain, see :func:`_chain`), number words. Right after "The answer is" (``after_answer_is``) an
    expression is evaluated and a lone "one" is a number; in running text "one" is mostly a pronoun."""
    hits: list[_Hit] = []
    covered: list[tuple[int, int]] = []

    def free(i: int) -> bool:
        return not any(a <= i < b for a, b in covered)

    for m in _LATEX_START.finditer(text):
        region = _latex_region(text, m) if free(m.start()) else None
        if region is None:
            continue
        covered.append((m.start(), region[3]))
        answer = _latex_answer(region[0])
        if answer is not None:
            hits.append((answer, region[1], region[2]))
    pos = 0
    while (m := _NUMBER.search(text, pos)) is not None:
        pos = m.end()
        if not free(m.start()):
            continue
        value, start, end = _chain(text, m, evaluate=after_answer_is)
        pos = max(end, m.end())
        covered.append((m.start(), pos))  # a chain's operands are not numbers of their own
        if value is not None and sum(c.isdigit() for c in text[start:end]) <= _MAX_DIGITS:
            hits.append((value, start, end))
    for m in _WORD_RUN.finditer(text):
        if not free(m.start()):
            continue
        value, start, end = _word_number(m)
        if after_answer_is or text[start:end].lower() != "one":
            hits.append((str(value), start, end))
    return sorted(hits, key=lambda h: h[1])


# what joins the options of a hedge: "5 or 6", "A, B, C, or D", "(A) ... or (C)", "C/D", "yes and no"
_HEDGE_JOIN = re.compile(
    r"[ \t\"'“”‘’]*(?:,[ \t]*(?:or\b|and\b)?|\bor\b|\band\b|/)[ \t\"'“”‘’]*(?:(?:either|maybe|perhaps|possibly)\b[ \t]*)?",
    re.IGNORECASE,
)
_SENTENCE_END = re.compile(r"[.!?;](?:\s|$)|\n")


def _span_number(span: str) -> _Hit | None:
    """The first number of the span, unless a range ("5-10") or a hedge ("5 or 6") comes first."""
    first = _NUMBER.search(span)
    if (
        first is not None
        and _chain(span, first)[0] is None
        and not any(a < first.start() for _, a, _ in _numbers(span[: first.start()], after_answer_is=True))
    ):
        return _HEDGED  # "The answer is 5-10 minutes": a range
    hits = _numbers(span, after_answer_is=True)
    if not hits:
        return None
    if len(hits) > 1 and hits[1][0] != hits[0][0]:
        join = _HEDGE_JOIN.match(span, hits[0][2])
        if join and join.end() == hits[1][1]:
            words = join.group(0).strip(" \t\"'“”‘’,")
            if words or re.match(r"\s*,?\s*(?:or|and)\b", span[hits[1][2] :]):
                return _HEDGED  # "5 or 6", "5, 6, or 7" (not "12, 3 more than ...")
    return hits[0]


# ----------------------------------------------------------------------------------------------
# Options (multiple choice)
# ----------------------------------------------------------------------------------------------


def _letter(match: re.Match) -> tuple[str, int, int]:
    group = next(i for i, g in enumerate(match.groups(), start=1) if g)
    return match.group(group).upper(), match.start(group), match.end(group)


@lru_cache(maxsize=4096)
def _option_pattern(option: str) -> re.Pattern | None:
    """Case-insensitive pattern of an option's normalized text, any whitespace between its words."""
    norm = normalize_freeform(option)
    if not norm:
        return None
    return re.compile(r"\s+".join(re.escape(w) for w in norm.split(" ")), re.IGNORECASE)


def _options(sample: Sample) -> list[tuple[re.Pattern, int, str]]:
    """(pattern, normalized length, label) of every option with text."""
    out = []
    for choice, label in zip(sample.choices, sample.choice_labels()):
        p = _option_pattern(choice)
        if p is not None:
            out.append((p, len(normalize_freeform(choice)), label))
    return out


def _unique_longest(hits: list[tuple[int, str, int, int, str]]) -> _Hit | None:
    """hits: (normalized option length, label, start, end, normalized option text). The longest wins
    when the others are all parts of it ("bank" within "bank vault"); several options of that
    length, or unrelated options, give None."""
    if not hits:
        return None
    longest = max(hits, key=lambda h: h[0])
    if all(h[4] in longest[4] for h in hits) and sum(h[4] == longest[4] for h in hits) == 1:
        return longest[1], longest[2], longest[3]
    return None


def _option_at_start(span: str, sample: Sample, whole: bool) -> _Hit | None:
    """The unique option whose text equals (whole=True) or starts (whole=False) ``span``, ignoring
    surrounding punctuation, quotes and case; the longest wins when one extends another."""
    start, end = _stripped(span, 0, len(span))
    if start == end:
        return None
    hits = []
    for pattern, length, label in _options(sample):
        m = pattern.match(span, start)
        if (
            not m
            or (whole and _stripped(span, m.end(), end) != (end, end))
            or (not whole and m.end() < len(span) and (span[m.end()].isalnum() or span[m.end()] == "_"))
        ):
            continue
        hits.append((length, label, m.start(), m.end(), normalize_freeform(m.group(0))))
    return _unique_longest(hits)


def _unless_negated(span: str, parse) -> _Hit | None:
    """``parse(span)``, except after a leading "not X": then the answer that follows a contrast
    ("not 5, it is 8" / "not A but B"), or None without one ("not A")."""
    off = len(span) - len(span.lstrip(" \t\n" + _QUOTES))
    neg = _NEGATED_LEAD.match(span, off)
    if not neg:
        return parse(span)
    contrast = _CONTRAST.search(span, neg.end())
    if contrast is None:
        return None
    hit = parse(span[contrast.end() :])
    if hit is None or hit is _HEDGED:
        return hit
    return hit[0], hit[1] + contrast.end(), hit[2] + contrast.end()


def _span_choice(span: str, sample: Sample) -> _Hit | None:
    """The choice named at the start of ``span`` ("not C, it is B" names B; "not C" none).

    A clear letter marker ("(C) ...", "C", "C.", "C) Paris") wins; otherwise an option's text at the
    start of the span ("A tree removes a gas", "I have no comment." are options, not letters A / I);
    otherwise a bare capital letter ("C because ...")."""
    hit = _unless_negated(span, lambda s: _plain_choice(s, sample))
    return _HEDGED if hit is not None and _hedged_choice(span, hit, sample) else hit


_JOINED_LETTER = re.compile(r"(?:[Oo]ption[ \t]+|[Cc]hoice[ \t]+)?(?:\(\s*([A-Za-z])\s*\)|([A-Z])(?![\w'’]))")


def _hedged_choice(span: str, hit: _Hit, sample: Sample) -> bool:
    """Whether the choice ``hit`` (found at the start of ``span``) is one of several joined in the
    same sentence: "A, B, C, or D", "(A) a pulley or (C) a wheel", "C/D", "a pulley or a wheel".
    A hedge names none of them; "C, because A is a lever" is no hedge."""
    valid = sample.choice_labels()
    stop = _SENTENCE_END.search(span, hit[2])
    end = stop.start() if stop else len(span)
    pos = hit[2]
    own = _option_at_start(span[pos:end], sample, whole=False)  # "(A) a pulley": skip A's text
    if own is not None:
        pos += own[2]
    join = _HEDGE_JOIN.match(span, pos, end)  # right after the choice (and its text), not later
    if join is None or not join.group(0).strip(" \t\"'“”‘’"):
        return False
    letter = _JOINED_LETTER.match(span, join.end(), end)
    other = _letter(letter)[0] if letter else None
    if other is None or other not in valid:
        by_text = _option_at_start(span[join.end() : end], sample, whole=False)
        other = by_text[0] if by_text else None
    return other is not None and other != hit[0]


def _plain_choice(span: str, sample: Sample) -> _Hit | None:
    off, end = _stripped(span, 0, len(span), " \t\n" + _QUOTES)
    s = span[off:end]
    match = _SPAN_LETTER.match(s)
    letter = _letter(match) if match else None
    if letter is not None and letter[0] not in sample.choice_labels():
        letter = None
    # "(C) ...", "C", "C.", "C) ...", "C: ...": a letter even if some option's text is "C" (the prompt asks for letters)
    if letter is not None and (match.group(1) or _MARKER_END.match(s, match.end())):
        return letter[0], letter[1] + off, letter[2] + off
    by_text = _option_at_start(s, sample, whole=False)
    hit = by_text if by_text is not None else letter
    return None if hit is None else (hit[0], hit[1] + off, hit[2] + off)


def _negated(text: str, start: int) -> bool:
    """Whether the mention at ``start`` follows "not" / "isn't" / "never" (an article may sit between)."""
    return bool(_NEGATED_BEFORE.search(text, max(0, start - 24), start))


# ----------------------------------------------------------------------------------------------
# Yes / no
# ----------------------------------------------------------------------------------------------


def _yes_no_words(text: str) -> list[tuple[str, int, int, bool]]:
    """(word, start, end, negated) of the yes/no/true/false words that answer (determiner "no" skipped)."""
    out = []
    for m in _YESNO.finditer(text):
        if m.group(1).lower() == "no" and _NO_DETERMINER.match(text, m.end()):
            continue
        out.append((m.group(1), m.start(), m.end(), _negated(text, m.start())))
    return out


def _yes_no_hedge(text: str, a: tuple[str, int, int, bool], b: tuple[str, int, int, bool]) -> bool:
    """Whether the answering words a, b are opposite answers joined as a hedge ("yes and no",
    "no, yes", '"yes" or "no"')."""
    if _yes_no_word(a[0]) == _yes_no_word(b[0]) or a[3] or b[3]:
        return False
    join = _HEDGE_JOIN.match(text, a[2])
    if join and join.end() == b[1] and join.group(0).strip(" \t\"'“”‘’"):
        return True
    between = text[a[2] : b[1]]  # "it could be yes or it could be no": "or" within one sentence
    return not _SENTENCE_END.search(between) and re.search(r"\bor\b", between, re.IGNORECASE) is not None


def _yes_no(text: str, span: bool = False) -> _Hit | None:
    """The first answering yes/no word; a negated one counts as its opposite unless a later
    un-negated word follows ("not no, it is yes" -> yes; "It is not true." -> no). Two opposite
    words joined as a hedge ("Yes and no.") answer nothing: right after "The answer is" (``span``)
    the statement names no answer (_HEDGED); in running text the reader goes on after them."""
    words = _yes_no_words(_blank(_YESNO_ECHOES, text))
    while len(words) > 1 and _yes_no_hedge(text, words[0], words[1]):
        if span:
            return _HEDGED
        words = words[2:]
    if not words:
        return None
    word, start, end, negated = words[0]
    if negated:
        later = [w for w in words[1:] if not w[3]]
        if later:
            return _yes_no_word(later[0][0]), later[0][1], later[0][2]
        return ("no" if _yes_no_word(word) == "yes" else "yes"), start, end
    return _yes_no_word(word), start, end


# ----------------------------------------------------------------------------------------------
# Strict: the span after "The answer is"
# ----------------------------------------------------------------------------------------------


def _span_answer(span: str, sample: Sample) -> _Hit | None:
    """The answer written right after "The answer is" (``span`` = rest of that line)."""
    if sample.task == "numeric":
        return _unless_negated(span, _span_number)
    if sample.task == "mc":
        return _span_choice(span, sample)
    if sample.task == "yesno":
        return _yes_no(span, span=True)
    return _freeform_text(span, 0, len(span))  # freeform: up to the end of the first sentence


_SPAN_CHARS = 300  # the answer follows "The answer is" at once; a bound keeps degenerate repeats linear
_QUOTE_WINDOW = 40  # '"The answer is', '"My final answer is'


def _line_from(text: str, start: int) -> str:
    """The rest of the line from ``start``, at most _SPAN_CHARS characters."""
    end = text.find("\n", start, start + _SPAN_CHARS)
    return text[start : min(len(text), start + _SPAN_CHARS) if end < 0 else end]


def _listed_letters(text: str, start: int) -> int:
    """How many distinct letters the lines from ``start`` on list ("A.\nB. x\nC)"), up to the first
    line that does not start with one."""
    letters = set()
    for line in text[start : start + _SPAN_CHARS].split("\n"):
        m = _LINE_LETTER.match(line)
        if not m:
            break
        letters.add(m.group(1))
    return len(letters)


def _statements(text: str, sample: Sample):
    """Each "The answer is X" of ``text`` that gives an answer, last first: (hit with offsets in
    ``text`` or _HEDGED, start of the statement)."""
    for match in reversed(list(_ANSWER_IS.finditer(text))):
        if _QUOTED_BEFORE.search(text, max(0, match.start() - _QUOTE_WINDOW), match.start()):
            continue  # an echoed instruction: 'End with "The answer is X"'
        start = match.end()
        line_end = text.find("\n", start, start + _SPAN_CHARS)
        if not text[start : start + _SPAN_CHARS if line_end < 0 else line_end].strip():  # "The answer is:\n42"
            start = re.compile(r"\s*").match(text, start).end()
            line_end = text.find("\n", start, start + _SPAN_CHARS)
        end = min(len(text), start + _SPAN_CHARS) if line_end < 0 else line_end
        if sample.task == "mc" and "\n" in text[match.start() : start] and _listed_letters(text, start) > 1:
            yield _HEDGED, match.start()  # "The answer is:\nA.\nB.\nC.": a list of options names none
            continue
        hit = _span_answer(text[start:end], sample)
        if hit is _HEDGED:
            yield hit, match.start()
        elif hit is not None:
            yield (hit[0], hit[1] + start, hit[2] + start), match.start()


# what makes a later statement a self-correction, not a contradiction
_CORRECTION = re.compile(
    r"\b(?:wait|actually|sorry|correction|mistake|miscount\w*|oops|rather|i\s+mean|on\s+second\s+thought|"
    r"let\s+me\s+(?:re\w+|correct)|hmm|no,)",
    re.IGNORECASE,
)


def _strict(text: str, sample: Sample) -> _Hit | None:
    """The last "The answer is X" that gives an answer. A hedge there names none (_HEDGED); so does
    an earlier statement of another answer with no correction between them ("The answer is yes.
    The answer is no.": a contradiction), while "The answer is A. No wait, the answer is B." is B."""
    statements = _statements(text, sample)
    last = next(statements, None)
    if last is None or last[0] is _HEDGED:
        return None if last is None else _HEDGED
    for hit, _at in statements:
        if hit is not _HEDGED and hit[0] != last[0][0] and not _CORRECTION.search(text, hit[2], last[1]):
            return _HEDGED
    return last[0]


# ----------------------------------------------------------------------------------------------
# Flexible fallbacks, per task: each returns (rule, answer, start, end) or None
# ----------------------------------------------------------------------------------------------


def _numeric_fallback(text: str, sample: Sample) -> tuple[str, str, int, int] | None:
    boxes = [m for m in _LATEX_START.finditer(text) if m.group(0) in ("\\boxed{", "\\fbox{")]
    for m in reversed(boxes):
        region = _latex_region(text, m)
        answer = None if region is None else _latex_answer(region[0])
        if answer is not None:
            return "flexible:boxed", answer, region[1], region[2]
    without_confidence = _blank(_CONFIDENCE_BEFORE, _blank(_CONFIDENCE_AFTER, text))
    hits = _numbers(without_confidence, after_answer_is=False)
    return ("flexible:last_number", *hits[-1]) if hits else None


def _line_letters(text: str, sample: Sample) -> list[tuple[str, int, int]]:
    """The letters that lines starting "B" / "B." / "B)" / "C. Paris" name as the choice.

    A bare line ("B", "B.", "B)") names its letter; a line with text names it only when the text is
    that option's own text ("C. Paris"): "A. The answer to ...", "A. 2018" or an empty "A:" are a
    Q/A answer prefix or a list item. Lines that list several letters ("A.\\nB.\\nC." or an echoed
    or reshuffled "A. x\\nB. y") name none of them."""
    labels = sample.choice_labels()
    bare, texted = [], []
    for m in _LINE_LETTER.finditer(text):
        rest = (m.group(3) or "").strip()
        if not rest:
            if m.group(2) != ":":
                bare.append((m.group(1), m.start(1), m.end(1)))
            continue
        option = _option_pattern(sample.choices[labels.index(m.group(1))]) if m.group(1) in labels else None
        own = option.match(rest) if option else None
        own = own and (own.end() == len(rest) or not (rest[own.end()].isalnum() or rest[own.end()] == "_"))
        texted.append((m.group(1), m.start(1), m.end(1), bool(own)))
    prefixes = {h[0] for h in texted if not h[3]}  # "A. 2018" lines: "A" is their prefix, not a choice
    named = [] if len({h[0] for h in bare}) > 1 else [h for h in bare if h[0] not in prefixes]
    if len({h[0] for h in texted}) <= 1:
        named += [h[:3] for h in texted if h[3]]
    return named


_ANSWER_WORD = re.compile(r"\banswer\b", re.IGNORECASE)
# ... is X": within one sentence of "answer" (a "?" may close a quoted question: 'the question "Which?" is B')
_PHRASE_IS = re.compile(r"\bis\b[ \t]*:?[ \t]*|[\n.!]|\?(?![\"”'])", re.IGNORECASE)
_PHRASE_WINDOW = 100


def _answer_phrases(text: str):
    """Where X starts in each "answer ... is X" of ``text`` ("The answer to your question is B"), the
    last "answer" first and, for one "answer", each "is" in turn."""
    for word in reversed(list(_ANSWER_WORD.finditer(text))):
        for m in _PHRASE_IS.finditer(text, word.end(), min(len(text), word.end() + _PHRASE_WINDOW)):
            if m.group(0)[:2].lower() != "is":
                break  # the sentence ended
            yield m.end()


def _mc_fallback(text: str, sample: Sample) -> tuple[str, str, int, int] | None:
    valid = sample.choice_labels()
    # 0. the whole reply is one option's text (unless it is a bare letter: "B" means B, even if an option is "B")
    if not _BARE_MARKER_LINE.match(text):
        whole = _option_at_start(text, sample, whole=True)
        if whole is not None:
            return ("flexible:whole_option", *whole)
    # 1. "Answer: (C) Paris", "option B", "the answer would be B": the last valid one
    for marker in reversed(list(_MARKER.finditer(text))):
        if _negated(text, marker.start()):
            continue  # "not option B"
        hit = _span_choice(_line_from(text, marker.end()), sample)
        if hit is _HEDGED:
            return None  # "Answer: A or B"
        if hit is not None:
            return "flexible:answer_marker", hit[0], hit[1] + marker.end(), hit[2] + marker.end()
    # 1b. "The answer to your question is A." (the answer phrase the prompts do not ask for)
    for start in _answer_phrases(text):
        hit = _span_choice(_line_from(text, start), sample)
        if hit is _HEDGED:
            return None
        if hit is not None:
            return "flexible:answer_phrase", hit[0], hit[1] + start, hit[2] + start
    # 2. standalone markers "(B)", lines naming a letter (see _line_letters): accepted if they name one
    #    letter only, or if the last non-empty line is nothing but a marker (and not the end of a list
    #    of bare letters)
    standalone = [
        (m.group(1).upper(), m.start(1), m.end(1))
        for m in _PAREN_LETTER.finditer(text)
        if not _negated(text, m.start())
    ]
    standalone = sorted((h for h in standalone + _line_letters(text, sample) if h[0] in valid), key=lambda h: h[1])
    if len({h[0] for h in standalone}) == 1:
        return ("flexible:lone_letter", *standalone[-1])
    lines = list(re.finditer(r"[^\n]*\S[^\n]*", text))
    if standalone and lines:
        last = _BARE_MARKER_LINE.match(lines[-1].group(0))
        bare = {b.group(1).upper() for b in (_BARE_MARKER_LINE.match(x.group(0)) for x in lines) if b}
        if last and last.group(1).upper() in valid and len(bare) == 1:
            start = lines[-1].start() + last.start(1)
            return "flexible:last_line_letter", last.group(1).upper(), start, start + 1
    # 3. exactly one option's text occurs in the reply, not negated ("It is not a lever.") and not on a
    #    lettered line: "A. 175" with 175 option B's text is a contradiction (or a list), not B
    lettered = [(m.start(), m.end()) for m in _LINE_LETTER.finditer(text) if (m.group(3) or "").strip()]
    hits = []
    for pattern, length, label in _options(sample):
        found = [
            m
            for m in pattern.finditer(text)
            if not (m.start() > 0 and (text[m.start() - 1].isalnum() or text[m.start() - 1] == "_"))
            and not (m.end() < len(text) and (text[m.end()].isalnum() or text[m.end()] == "_"))
            and not _negated(text, m.start())
            and not any(a <= m.start() < b for a, b in lettered)
        ]
        if found:
            hits.append((length, label, found[-1].start(), found[-1].end(), normalize_freeform(found[-1].group(0))))
    hit = _unique_longest(hits)
    return ("flexible:option_text", *hit) if hit else None


def _phrases_contradict(text: str, parse) -> bool:
    """Whether two "The answer to ... is X" phrases of ``text`` give different answers with no
    correction between them ("The answer to this question is yes. The answer to this question is
    no": no answer)."""
    hits = []
    for start in _answer_phrases(text):
        if re.search(r"[\"“]", text[text.rfind("\n", 0, start) + 1 : start]):
            continue  # 'The answer to the question "..." is no': about an invented question
        hit = parse(_line_from(text, start))
        if hit is not None and hit is not _HEDGED:
            hits.append((hit[0], hit[1] + start, hit[2] + start))
    if len(hits) < 2:
        return False
    last = max(hits, key=lambda h: h[1])
    return any(h[0] != last[0] and not _CORRECTION.search(text, h[2], last[1]) for h in hits if h[1] < last[1])


def _yesno_fallback(text: str, sample: Sample) -> tuple[str, str, int, int] | None:
    if _phrases_contradict(text, lambda span: _yes_no(span, span=True)):
        return None
    hit = _yes_no(text)
    return ("flexible:yes_no_word", *hit) if hit else None


_PLACEHOLDER = re.compile(r"x(?:$|[\s,.;:=])", re.IGNORECASE)
# "The answer to this question is 100", "Your answer to the question ... is yajo"
_LAST_LINE_WORDS = 6
_LIST_NUMBER = re.compile(r"[ \t]*(?:\d+[.)](?=\s|$)[ \t]*)?")


def _freeform_text(text: str, start: int, end: int) -> _Hit | None:
    """The free-form answer in text[start:end] (its first sentence), unless it is none: empty, the
    prompt's placeholder X ("The answer is X", "X = X"), or another question ("the answer to the
    question 'What is ...'")."""
    stop = re.compile(r"[.!?](?:\s|$)").search(text, start, end)
    start, end = _stripped(text, start, stop.start() if stop else end)
    answer = normalize_freeform(text[start:end])
    if not answer or _PLACEHOLDER.match(answer) or re.search(r"\b(?:answer|question)\b", answer):
        return None
    return answer, start, end


def _freeform_fallback(text: str, sample: Sample) -> tuple[str, str, int, int] | None:
    for marked in reversed(list(re.finditer(r"(?im)\banswer\s*:\s*(.+)$", text))):
        hit = _freeform_text(text, marked.start(1), marked.end(1))
        if hit:
            return ("flexible:answer_colon", *hit)
    for start in _answer_phrases(text):
        hit = _freeform_text(text, start, start + len(_line_from(text, start)))
        if hit:
            return ("flexible:answer_phrase", *hit)
    # the last line (after its last ":"), when it is a short answer: not a sentence, not a question
    for line in reversed(list(re.finditer(r"[^\n]*\S[^\n]*", text))):
        start = line.start() + line.group(0).rfind(":") + 1
        start += _LIST_NUMBER.match(text, start, line.end()).end() - start  # "3. yajo": an item of a numbered list
        if not text[start : line.end()].strip(_STRIP_CHARS + " \t"):
            continue  # an empty "A:" answer slot: the line before may hold the answer
        if line.group(0).rstrip().endswith("?") or len(text[start : line.end()].split()) > _LAST_LINE_WORDS:
            return None
        hit = _freeform_text(text, start, line.end())
        return ("flexible:last_line", *hit) if hit else None
    return None


_FALLBACKS = {
    "numeric": _numeric_fallback,  # boxed: \boxed{X}; last_number: the last number (confidence removed)
    # whole_option: the reply is one option's text; answer_marker: "Answer: B" / "option B";
    # lone_letter: one letter named standalone "(B)" / "B."; last_line_letter: a last line "(B)";
    # option_text: the one option whose text occurs (not negated)
    "mc": _mc_fallback,
    "yesno": _yesno_fallback,  # yes_no_word: the first yes / no / true / false word (negation read)
    # answer_colon: "Answer: X"; answer_phrase: "The answer to this question is X"; last_line: a short
    # last line (after its last ":"); the placeholder X, questions and sentences are no answer
    "freeform": _freeform_fallback,
}


def _prepare(text: str) -> str:
    """Bold markers blanked; cut at an invented follow-up question (see the module docstring)."""
    text = _blank(_BOLD, text)
    for m in _FOLLOWUP.finditer(text):
        if text[: m.start()].strip():
            return text[: m.start()]
    return text


def extract_detail(text: str, sample: Sample, policy: str = "flexible") -> Extraction:
    """The answer in a model output, the rule that found it and its character span in ``text``."""
    if policy not in POLICIES:
        raise ValueError(f"unknown extraction policy {policy!r}; valid: {', '.join(POLICIES)}")
    if sample.task not in _FALLBACKS:
        raise ValueError(f"sample {sample.id!r}: unknown task {sample.task!r}; valid: {', '.join(_FALLBACKS)}")
    if not text:
        return NO_ANSWER
    text = _prepare(text)
    hit = _strict(text, sample)
    if hit is _HEDGED:  # the last "The answer is" hedges: it retracts what came before, names nothing
        return NO_ANSWER
    if hit is not None:
        return Extraction(hit[0], "strict:the_answer_is", (hit[1], hit[2]))
    if policy == "flexible":
        found = _FALLBACKS[sample.task](_blank(_ECHOES, text), sample)
        if found is not None:
            return Extraction(found[1], found[0], (found[2], found[3]))
    return NO_ANSWER


def extract(text: str, sample: Sample, policy: str = "flexible") -> str | None:
    """The normalized answer in a model output, or None.

    Returns a canonical number string (numeric; non-numeric LaTeX such as "\\sqrt{2}" as written),
    a valid choice letter of ``sample`` (mc), "yes"/"no" (yesno) or a lowercased stripped string
    (freeform). See :func:`extract_detail` for the rule and the span.
    """
    return extract_detail(text, sample, policy).answer


# ----------------------------------------------------------------------------------------------
# Correctness
# ----------------------------------------------------------------------------------------------


def _as_math(text: str) -> str:
    text = text.strip()
    return text if text.startswith(("$", "\\(", "\\[")) else f"${text}$"


@lru_cache(maxsize=65536)
def _math_verify_equal(gold: str, pred: str) -> bool:
    """math-verify's equivalence of two answers (LaTeX or plain expressions: "\\frac{1}{3}" == "1/3",
    "2\\sqrt{2}" == "\\sqrt{8}"). Its timeouts use SIGALRM, which exists only in the main thread:
    elsewhere (a Ray worker thread) they are off."""
    from math_verify import parse, verify

    timeout = 5 if threading.current_thread() is threading.main_thread() else None
    g = parse(_as_math(gold), parsing_timeout=timeout)
    p = parse(_as_math(pred), parsing_timeout=timeout)
    return bool(g and p and verify(g, p, timeout_seconds=timeout))


def numbers_equal(pred: str, gold: str) -> bool:
    """Numeric answers: plain numbers as floats within 1e-6 (the fast path, thousands of rows per
    millisecond); anything else (fractions, LaTeX) through math-verify."""
    a, b = canonical_number(pred), canonical_number(gold)
    if a is not None and b is not None:
        return math.isclose(float(a), float(b), rel_tol=0.0, abs_tol=1e-6)
    return _math_verify_equal(gold, pred)


def is_correct(pred: str | None, sample: Sample) -> bool:
    """Whether a normalized prediction matches ``sample.gold``: numbers by :func:`numbers_equal`,
    mc letters and yes/no exactly, freeform after :func:`normalize_freeform` against gold or aliases.
    An unlabelled sample (empty gold) is never correct."""
    if pred is None or sample.gold == "":
        return False
    if sample.task == "numeric":
        return numbers_equal(pred, sample.gold)
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
