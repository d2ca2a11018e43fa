"""ARC-Easy and ARC-Challenge (ARC-V1-Feb2018): grade-school science questions, usually 4 options
(a few 3 or 5); Challenge holds the hard ones. Both sets have the same formats and one reader.

``test`` exists here only in LLM-Adapters' instruction format: question and options are inlined in
one string ("...question: <q>\\n\\nAnswer1: <o1> Answer2: <o2> ...\\n\\nAnswer format: answer1/...")
with no ids (id = ``test-<row>``) and gold ``answerN``. ``dev``/``train`` are AI2's original jsonl.
"""

from __future__ import annotations

import re
from pathlib import Path

from jobs.datasets.base import (
    DatasetAdapter,
    RowError,
    ai2_mc_sample,
    build_samples,
    letter_from_index,
    make_sample,
    read_json_list,
    read_jsonl,
)
from jobs.types import LoadResult, Sample

_INSTRUCTION = re.compile(
    r"^Please choose the correct answer to the question: (?P<question>.*?)\n\n"
    r"(?P<options>Answer1: .*)\n\nAnswer format: (?P<format>\S+)\s*$",
    re.S,
)
_MARKER = re.compile(r"(?:^|\s)Answer(\d+): ")
N_CHOICES = (3, 5)


def parse_instruction(instruction: str) -> tuple[str, list[str]]:
    """(question, option texts) out of an LLM-Adapters ARC instruction; the options must be numbered
    1..N and N must agree with the "Answer format" line."""
    match = _INSTRUCTION.match(instruction) if isinstance(instruction, str) else None
    if not match:
        raise RowError("instruction does not match the LLM-Adapters ARC format")
    parts = _MARKER.split(match.group("options"))
    numbers, texts = parts[1::2], parts[2::2]
    if parts[0].strip() or numbers != [str(i) for i in range(1, len(numbers) + 1)]:
        raise RowError(f"options are not numbered Answer1..AnswerN: {numbers}")
    declared = match.group("format").split("/")
    if declared != [f"answer{i}" for i in range(1, len(texts) + 1)]:
        raise RowError(f"wrong option count: {len(texts)} options but answer format {match.group('format')!r}")
    return match.group("question"), texts


def llm_adapters_sample(split: str, index: int, row: dict) -> Sample:
    question, options = parse_instruction(row["instruction"])
    answer = re.fullmatch(r"answer(\d+)", str(row["answer"]).strip())
    if not answer:
        raise RowError(f"answer {row['answer']!r} is not 'answerN'")
    return make_sample(
        id=f"{split}-{index}",
        question=question,
        task="mc",
        gold=letter_from_index(int(answer.group(1)) - 1, len(options)),
        choices=options,
        n_choices=N_CHOICES,
    )


def make_parser(folder: str, prefix: str):
    """A ``parse(root, split)`` for one ARC folder (``arc_easy``/``ARC-Easy``)."""
    files = {
        "test": f"{folder}/llm-adapters/test.json",
        "train": f"{folder}/{prefix}-Train.jsonl",
        "dev": f"{folder}/{prefix}-Dev.jsonl",
    }

    def parse(root: Path, split: str) -> LoadResult:
        path = root / files[split]
        if split == "test":
            return build_samples(read_json_list(path), str(path), lambda i, row: llm_adapters_sample(split, i, row))
        return build_samples(read_jsonl(path), str(path), lambda i, row: ai2_mc_sample(i, row, n_choices=N_CHOICES))

    return files, parse


def arc_adapter(name: str, prefix: str, counts: dict[str, int], description: str, group: str | None) -> DatasetAdapter:
    """The adapter of one ARC set in ``<root>/<name>/`` whose AI2 files are named ``<prefix>-*``, in
    ``group``."""
    files, parse = make_parser(name, prefix)
    notes = {"test": "; LLM-Adapters instruction format, no ids"}
    return DatasetAdapter(
        name=name,
        task="mc",
        splits={split: f"{files[split]} ({n}{notes.get(split, '')})" for split, n in counts.items()},
        eval_split="test",
        train_split="train",
        parse=parse,
        description=description,
        group=group,
    )


#: ARC is grade-school science, grouped with commonsense as OpenBookQA is (``conf/dataset/openbookqa.yaml``).
ARC_EASY = arc_adapter(
    "arc_easy",
    "ARC-Easy",
    {"test": 2376, "train": 2251, "dev": 570},
    "ARC-Easy grade-school science questions, 3-5 options",
    group="commonsense",
)
ARC_CHALLENGE = arc_adapter(
    "arc_challenge",
    "ARC-Challenge",
    {"test": 1172, "train": 1119, "dev": 299},
    "ARC-Challenge grade-school science questions, 3-5 options",
    group="commonsense",
)
