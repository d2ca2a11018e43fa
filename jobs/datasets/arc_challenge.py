"""ARC-Challenge (ARC-V1-Feb2018): the hard ARC questions; same formats as ``arc_easy``."""
from __future__ import annotations

from jobs.datasets.arc_easy import make_parser
from jobs.datasets.base import DatasetAdapter

FILES, parse = make_parser("arc_challenge", "ARC-Challenge")

ADAPTER = DatasetAdapter(
    name="arc_challenge",
    task="mc",
    splits={
        "test": f"{FILES['test']} (1172; LLM-Adapters instruction format, no ids)",
        "train": f"{FILES['train']} (1119)",
        "dev": f"{FILES['dev']} (299)",
    },
    eval_split="test",
    train_split="train",
    parse=parse,
    description="ARC-Challenge grade-school science questions, 3-5 options",
)
