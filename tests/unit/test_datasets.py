"""Dataset adapters on the real shared files (counts from MANIFEST.md), plus malformed rows,
deterministic subsampling, error messages and the hub / local-file loader."""

from __future__ import annotations

import importlib
import json
import os
import sys
import types
from pathlib import Path

import pytest

from jobs.datasets import DATASETS, DatasetAdapter, base, load_samples
from jobs.datasets.hub import FieldMapping, load_hub, load_local
from jobs.registry import UnknownNameError

try:
    DATA_ROOT = base.default_data_root()
except FileNotFoundError:  # pragma: no cover - only outside this workspace
    DATA_ROOT = None
needs_data = pytest.mark.skipif(DATA_ROOT is None, reason="shared datasets folder not found")

# (dataset, split) -> examples, from /work/shared/datasets/MANIFEST.md
COUNTS = {
    ("gsm8k", "test"): 1319,
    ("gsm8k", "train"): 7473,
    ("multiarith", "test"): 600,
    ("aqua", "test"): 254,
    ("aqua", "dev"): 254,
    ("addsub", "test"): 395,
    ("singleeq", "test"): 508,
    ("mathqa", "test"): 2985,
    ("mathqa", "dev"): 4475,
    ("commonsenseqa", "dev"): 1221,
    ("commonsenseqa", "train"): 9741,
    ("strategyqa", "bigbench"): 2290,
    ("strategyqa", "train"): 2061,
    ("strategyqa", "dev"): 229,
    ("arc_easy", "test"): 2376,
    ("arc_easy", "train"): 2251,
    ("arc_easy", "dev"): 570,
    ("arc_challenge", "test"): 1172,
    ("arc_challenge", "train"): 1119,
    ("arc_challenge", "dev"): 299,
    ("piqa", "valid"): 1838,
    ("social_iqa", "dev"): 1954,
    ("social_iqa", "train"): 33410,
    ("hellaswag", "val"): 10042,
    ("winogrande", "dev"): 1267,
    ("winogrande", "train_xs"): 160,
    ("winogrande", "train_s"): 640,
    ("winogrande", "train_m"): 2558,
    ("boolq", "dev"): 3270,
    ("mmlu", "test"): 14042,
    ("mmlu", "dev"): 285,
    ("mmlu", "val"): 1531,
    ("truthfulqa", "v1"): 817,
    ("truthfulqa", "jan2025"): 790,
    ("date_understanding", "bigbench"): 369,
    ("date_understanding", "bbh"): 250,
    ("coin_flip", "test"): 500,
    ("last_letters", "test"): 500,
}
# dataset -> (eval split, train split)
ROLES = {
    "gsm8k": ("test", "train"),
    "multiarith": ("test", None),
    "aqua": ("test", "dev"),
    "addsub": ("test", None),
    "singleeq": ("test", None),
    "mathqa": ("test", "dev"),
    "commonsenseqa": ("dev", "train"),
    "strategyqa": ("bigbench", None),
    "arc_easy": ("test", "train"),
    "arc_challenge": ("test", "train"),
    "piqa": ("valid", None),
    "social_iqa": ("dev", "train"),
    "hellaswag": ("val", None),
    "winogrande": ("dev", "train_m"),
    "boolq": ("dev", None),
    "mmlu": ("test", "val"),
    "truthfulqa": ("v1", None),
    "date_understanding": ("bigbench", None),
    "coin_flip": ("test", None),
    "last_letters": ("test", None),
}


def test_registry_lists_every_dataset_with_its_roles():
    assert DATASETS.names() == sorted(ROLES)
    for name, (eval_split, train_split) in ROLES.items():
        adapter = DATASETS.get(name)
        assert isinstance(adapter, DatasetAdapter)
        assert adapter.name == name
        assert (adapter.eval_split, adapter.train_split) == (eval_split, train_split)
        assert set(adapter.splits) == {split for (n, split) in COUNTS if n == name}


def test_the_papers_datasets_are_its_grids_and_the_offline_ones_are_built_in():
    import yaml

    from jobs.datasets import PAPER_DATASETS, PAPER_DATASETS_OFFLINE, PAPER_STAND_INS
    from jobs.uq import PAPER_METHODS

    grid = yaml.safe_load((Path(__file__).resolve().parents[2] / "conf" / "grid" / "paper.yaml").read_text())
    assert list(PAPER_DATASETS) == grid["datasets"] and list(PAPER_METHODS) == grid["uq"]
    assert set(PAPER_STAND_INS) == set(PAPER_DATASETS) - set(DATASETS.names())
    assert set(PAPER_DATASETS_OFFLINE) <= set(DATASETS.names()) and len(set(PAPER_DATASETS_OFFLINE)) == 14


@needs_data
@pytest.mark.parametrize("name,split", sorted(COUNTS))
def test_real_files_parse_cleanly(name, split):
    result = load_samples(name, split)
    adapter = DATASETS.get(name)
    assert result.malformed == []
    assert len(result.samples) == COUNTS[(name, split)]
    assert len({s.id for s in result.samples}) == len(result.samples)
    for s in result.samples:
        assert s.question.strip() and s.task == adapter.task
        if s.task == "numeric":
            assert s.gold == base.canonical_number(s.gold) and "," not in s.gold
        elif s.task == "mc":
            assert len(s.choices) >= 2 and all(c.strip() for c in s.choices)
            assert s.gold in s.choice_labels()
        elif s.task == "yesno":
            assert s.gold in ("yes", "no")
        else:
            assert s.gold == s.gold.strip() and s.gold


@needs_data
def test_eval_split_is_the_default():
    assert len(load_samples("gsm8k").samples) == 1319
    assert len(load_samples("commonsenseqa").samples) == 1221


def _first(name, split=None):
    return load_samples(name, split).samples[0]


@needs_data
@pytest.mark.parametrize(
    "name,split,index,gold,choices_head",
    [
        ("gsm8k", "test", 0, "18", ()),
        ("multiarith", "test", 0, "39", ()),
        ("addsub", "test", 0, "43", ()),
        ("singleeq", "test", 0, "43", ()),
        ("aqua", "test", 0, "A", ("5(√3 + 1)", "6(√3 + √2)")),
        ("mathqa", "test", 0, "A", ("38", "27.675", "30", "data inadequate", "none of these")),
        ("commonsenseqa", "dev", 0, "A", ("bank", "library")),
        ("arc_easy", "test", 0, "A", ("Sunlight is the source of energy for nearly all ecosystems.",)),
        ("arc_easy", "dev", 0, "A", ("cellular telephone", "television")),
        ("piqa", "valid", 0, "A", ()),
        ("social_iqa", "dev", 0, "C", ("make a new plan", "Go home and see Riley", "Find somewhere to go")),
        ("hellaswag", "val", 0, "D", ("is using wrap to wrap a pair of skis.",)),
        ("winogrande", "dev", 0, "B", ("Sarah", "Maria")),
        ("boolq", "dev", 0, "no", ()),
        ("strategyqa", "bigbench", 0, "yes", ()),
        ("coin_flip", "test", 0, "yes", ()),
        ("last_letters", "test", 0, "yajo", ()),
    ],
)
def test_known_rows(name, split, index, gold, choices_head):
    s = load_samples(name, split).samples[index]
    assert s.gold == gold
    assert s.choices[: len(choices_head)] == choices_head


@needs_data
def test_numeric_gold_normalization_on_real_rows():
    golds = {s.gold for s in load_samples("gsm8k", "test").samples}
    assert "1450000" in golds  # "#### 1,450,000"
    assert "11.5" in {s.gold for s in load_samples("singleeq").samples}  # 11.5 float
    assert "9.43" in {s.gold for s in load_samples("addsub").samples}  # "9.43" string


@needs_data
def test_format_specific_rows():
    # MathQA rows whose options field is a Python list repr, with a doubled marker
    doubled = [s for s in load_samples("mathqa", "test").samples if s.choices[0] == "4 inches"]
    assert doubled and doubled[0].choices == ("4 inches", "6 inches", "5 inches", "8 inches", "10 inches")
    # ARC test: 3- and 5-option rows; ARC dev: digit labels relabelled A..
    sizes = {len(s.choices) for s in load_samples("arc_easy", "test").samples}
    assert sizes == {3, 4, 5}
    digit = next(s for s in load_samples("arc_easy", "dev").samples if s.id == "Mercury_7057260")
    assert digit.gold == "C"
    # MMLU ids and subject
    first = _first("mmlu")
    assert first.id == "abstract_algebra-0" and first.meta["subject"] == "abstract_algebra"
    assert len({s.meta["subject"] for s in load_samples("mmlu").samples}) == 57
    # BoolQ passage becomes context, question gets a "?"
    boolq = _first("boolq")
    assert boolq.context.startswith("All biomass goes through") and boolq.question.endswith("?")
    # Social IQa context
    assert _first("social_iqa").context.startswith("Tracy didn't go home")


@needs_data
@pytest.mark.parametrize(
    "name,split", [("truthfulqa", "v1"), ("truthfulqa", "jan2025"), ("date_understanding", "bigbench")]
)
def test_gold_first_files_are_shuffled_stably(name, split):
    samples = load_samples(name, split).samples
    # the file lists the true option first; after the fixed shuffle gold letters are spread out
    golds = [s.gold for s in samples]
    assert golds.count("A") < 0.5 * len(golds)
    raw = base.read_json(DATA_ROOT / importlib.import_module(f"jobs.datasets.{name}").FILES[split])
    rows = raw["examples"] if isinstance(raw, dict) else raw
    key = "mc1_targets" if name == "truthfulqa" else "target_scores"
    for s, row in zip(samples, rows):
        true_option = next(option for option, score in row[key].items() if score == 1)
        assert s.choices[s.choice_labels().index(s.gold)] == true_option.strip()
    assert base.stable_shuffle(6, "k") == base.stable_shuffle(6, "k")


@needs_data
def test_truthfulqa_jan2025_empty_false_options_are_dropped():
    samples = load_samples("truthfulqa", "jan2025").samples
    assert sum(s.meta["dropped_empty_options"] for s in samples) == 17
    assert all(c.strip() for s in samples for c in s.choices)


# ------------------------------------------------------------------------------------------
# limit / seed / exclude_ids
# ------------------------------------------------------------------------------------------


@needs_data
def test_limit_is_deterministic_and_keeps_file_order():
    ids = [s.id for s in load_samples("gsm8k", limit=50, seed=3).samples]
    assert ids == [s.id for s in load_samples("gsm8k", limit=50, seed=3).samples]
    assert len(ids) == 50
    assert ids != [s.id for s in load_samples("gsm8k", limit=50, seed=4).samples]
    order = [s.id for s in load_samples("gsm8k").samples]
    assert ids == sorted(ids, key=order.index)
    assert len(load_samples("gsm8k", limit=10**6).samples) == 1319
    assert load_samples("gsm8k", limit=0).samples == []


@needs_data
def test_exclude_ids_are_dropped_before_the_limit():
    first = load_samples("aqua", limit=20, seed=1).samples
    excluded = {s.id for s in first}
    rest = load_samples("aqua", limit=20, seed=1, exclude_ids=excluded).samples
    assert len(rest) == 20 and not excluded & {s.id for s in rest}
    assert len(load_samples("aqua", exclude_ids=excluded).samples) == 254 - 20


@needs_data
def test_results_are_fresh_copies_of_the_cache():
    a = load_samples("coin_flip")
    a.samples.clear()
    assert len(load_samples("coin_flip").samples) == 500


# ------------------------------------------------------------------------------------------
# errors
# ------------------------------------------------------------------------------------------


def test_unknown_dataset_says_did_you_mean():
    with pytest.raises(UnknownNameError) as err:
        load_samples("gsm8kk")
    assert "did you mean 'gsm8k'" in str(err.value).lower()
    assert "commonsenseqa" in str(err.value)  # lists the choices


def test_unknown_split_lists_valid_splits():
    with pytest.raises(ValueError) as err:
        load_samples("winogrande", "validation")
    msg = str(err.value)
    assert "'winogrande'" in msg and "'validation'" in msg
    assert "dev, train_xs, train_s, train_m" in msg


def test_bad_limit_is_rejected():
    with pytest.raises(ValueError, match="limit"):
        load_samples("gsm8k", limit=-1, root=Path("/nonexistent"))


def test_missing_file_raises_naming_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="gsm8k/test.jsonl"):
        load_samples("gsm8k", root=tmp_path)


def test_adapter_rejects_unknown_eval_split():
    with pytest.raises(ValueError, match="eval_split 'test' is not a split; valid: dev"):
        DatasetAdapter("x", "mc", {"dev": "x.jsonl"}, "test", None, lambda r, s: None, "x", None)


def test_default_data_root_error_names_the_paths_tried(tmp_path, monkeypatch):
    monkeypatch.setattr(base, "__file__", str(tmp_path / "a" / "base.py"))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError) as err:
        base.default_data_root()
    assert str(tmp_path / "a" / "shared" / "datasets") in str(err.value)


@needs_data
def test_default_data_root_is_the_shared_folder():
    assert (DATA_ROOT / "MANIFEST.md").is_file()


# ------------------------------------------------------------------------------------------
# malformed rows: counted with reasons, never raised
# ------------------------------------------------------------------------------------------


def _write(root: Path, rel: str, text: str) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def test_malformed_jsonl_rows_are_counted(tmp_path):
    rows = [
        json.dumps({"question": "1+1?", "answer": "so\n#### 2"}),
        json.dumps({"answer": "#### 3"}),  # no question
        json.dumps({"question": "q", "answer": "no final marker"}),
        "{not json",
        "",  # blank lines are not records
        json.dumps({"question": "q", "answer": "#### twelve"}),
        json.dumps({"question": "   ", "answer": "#### 4"}),
        json.dumps({"question": "big", "answer": "#### 1,000.50"}),
    ]
    _write(tmp_path, "gsm8k/test.jsonl", "\n".join(rows) + "\n")
    result = load_samples("gsm8k", root=tmp_path)
    assert [(s.id, s.gold) for s in result.samples] == [("test-0", "2"), ("test-6", "1000.5")]
    reasons = {m.row: m.reason for m in result.malformed}
    assert reasons == {
        1: "missing field 'question'",
        2: "answer has no '####' final-answer marker",
        3: reasons[3],
        4: "gold 'twelve' is not a number",
        5: "empty question",
    }
    assert reasons[3].startswith("invalid JSON")
    assert all(m.source.endswith("gsm8k/test.jsonl") for m in result.malformed)


def test_malformed_mc_rows_wrong_option_count_and_bad_gold(tmp_path):
    rows = [
        {"question": "q", "options": ["A)1", "B)2", "C)3", "D)4", "E)5"], "correct": "B"},
        {"question": "q", "options": ["A)1", "B)2", "C)3", "D)4"], "correct": "B"},
        {"question": "q", "options": ["A)1", "C)2", "B)3", "D)4", "E)5"], "correct": "B"},
        {"question": "q", "options": ["A)1", "B)2", "C)3", "D)4", "E)5"], "correct": "F"},
    ]
    _write(tmp_path, "aqua/test.json", "\n".join(json.dumps(r) for r in rows))
    result = load_samples("aqua", root=tmp_path)
    assert [s.gold for s in result.samples] == ["B"]
    reasons = [m.reason for m in result.malformed]
    assert reasons == [
        "wrong option count: 4 options, expected 5",
        "option 2 'C)2' does not start with 'B)'",
        "gold 'F' is not one of the choice letters A, B, C, D, E",
    ]


def test_label_file_misalignment_is_reported(tmp_path):
    row = {"goal": "g", "sol1": "a", "sol2": "b"}
    _write(tmp_path, "piqa/valid.jsonl", "\n".join(json.dumps(row) for _ in range(3)) + "\n")
    _write(tmp_path, "piqa/valid-labels.lst", "0\n1\n2\n1\n")
    result = load_samples("piqa", root=tmp_path)
    assert [s.gold for s in result.samples] == ["A", "B"]
    assert [(m.row, m.reason) for m in result.malformed] == [
        (2, "gold index 2 out of range for 2 options"),
        (3, "label line 3 has no data row (data file has 3 rows)"),
    ]


def test_duplicate_ids_and_bad_csv_rows(tmp_path):
    _write(tmp_path, "mmlu/test/x_test.csv", 'q1,a,b,c,d,A\n"q2, with comma",a,b,c,d,E\nq3,a,b,c,D\n')
    result = load_samples("mmlu", root=tmp_path)
    assert [s.id for s in result.samples] == ["x-0"]
    assert [m.reason for m in result.malformed] == [
        "answer 'E' is not a letter A-D",
        "wrong column count: 5 columns, expected 6",
    ]
    rows = [{"qID": "same", "sentence": "a _ b", "option1": "x", "option2": "y", "answer": "1"}] * 2
    _write(tmp_path, "winogrande/dev.jsonl", "\n".join(json.dumps(r) for r in rows))
    _write(tmp_path, "winogrande/dev-labels.lst", "1\n1\n")
    result = load_samples("winogrande", root=tmp_path)
    assert len(result.samples) == 1
    assert result.malformed[0].reason == "duplicate id 'same' (first at row 0)"


@pytest.mark.parametrize(
    "raw,canonical",
    [
        ("39.0", "39"),
        (39.0, "39"),
        ("1,450,000", "1450000"),
        ("1.50", "1.5"),
        (1.84, "1.84"),
        ("-0", "0"),
        ("-7", "-7"),
        ("0.125", "0.125"),
    ],
)
def test_canonical_number(raw, canonical):
    assert base.canonical_number(raw) == canonical


# ------------------------------------------------------------------------------------------
# hub / local files
# ------------------------------------------------------------------------------------------

MC_ROWS = [
    {"uid": "q1", "q": "Capital of France?", "opts": ["London", "Paris"], "label": 1},
    {"uid": "q2", "q": "2+2?", "opts": ["4", "5"], "label": 0},
    {"uid": "q3", "q": "broken", "opts": ["x", "y"], "label": 7},
    {"uid": "q4", "opts": ["x", "y"], "label": 0},
]
MC_MAPPING = FieldMapping(id="uid", question="q", gold="label", choices="opts", gold_format="index0")


def _check_mc(result):
    assert [(s.id, s.gold, s.choices) for s in result.samples] == [
        ("q1", "B", ("London", "Paris")),
        ("q2", "A", ("4", "5")),
    ]
    assert [(m.row, m.reason) for m in result.malformed] == [
        (2, "gold index 7 out of range for 2 options"),
        (3, "missing field 'q'"),
    ]


def test_load_local_jsonl(tmp_path):
    path = tmp_path / "mc.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in MC_ROWS))
    _check_mc(load_local(path, MC_MAPPING, "mc", "toy"))


def test_load_local_parquet(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [
        {"question": "How many?", "answer": "3 + 4 = 7\n#### 1,007"},
        {"question": "And now?", "answer": "no marker"},
    ]
    path = tmp_path / "math.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    result = load_local(path, FieldMapping(gold_format="gsm8k"), "numeric", "toy")
    assert [(s.id, s.gold) for s in result.samples] == [("math-0", "1007")]
    assert result.malformed[0].reason == "answer has no '####' final-answer marker"


def test_load_local_csv_json_and_nested_fields(tmp_path):
    csv_path = tmp_path / "t.csv"
    csv_path.write_text("question,A,B,C,answer\nPick,x,y,z,(c)\n")
    mapping = FieldMapping(gold="answer", choices=("A", "B", "C"), gold_format="letter")
    assert [s.gold for s in load_local(csv_path, mapping, "mc", "toy").samples] == ["C"]

    json_path = tmp_path / "t.json"
    rows = [{"question": {"stem": "Is it?"}, "passage": "Text.", "label": 1}]
    json_path.write_text(json.dumps({"examples": rows}))
    mapping = FieldMapping(question="question.stem", gold="label", context="passage", gold_format="bool")
    (sample,) = load_local(json_path, mapping, "yesno", "toy").samples
    assert (sample.question, sample.context, sample.gold, sample.id) == ("Is it?", "Text.", "yes", "t-0")

    text_gold = tmp_path / "g.json"
    text_gold.write_text(json.dumps([{"question": "q", "answer": "Paris", "choices": {"text": ["Rome", "Paris"]}}]))
    mapping = FieldMapping(choices="choices.text", gold_format="text")
    assert load_local(text_gold, mapping, "mc", "toy").samples[0].gold == "B"


def test_field_mapping_errors(tmp_path):
    with pytest.raises(ValueError) as err:
        FieldMapping(gold_format="idx")
    assert str(err.value) == (
        "FieldMapping.gold_format: unknown value 'idx'; valid: text, letter, index0, index1, bool, number, gsm8k"
    )
    with pytest.raises(ValueError, match="'bool' does not fit task 'numeric'; use one of text, number, gsm8k"):
        load_local(tmp_path / "x.jsonl", FieldMapping(gold_format="bool"), "numeric", "toy")
    with pytest.raises(ValueError, match="choices must be set for task 'mc'"):
        load_local(tmp_path / "x.jsonl", FieldMapping(gold_format="letter"), "mc", "toy")
    with pytest.raises(ValueError, match=r"unsupported file type '\.txt'.*valid: \.jsonl, \.json, \.parquet, \.csv"):
        load_local(tmp_path / "x.txt", FieldMapping(), "freeform", "toy")


def test_load_hub_wiring_with_a_stand_in_datasets_module(monkeypatch):
    calls = []

    def load_dataset(path, name, split, **kwargs):
        calls.append((path, name, split, kwargs))
        return list(MC_ROWS)

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    result = load_hub("org/toy", "main", "validation", MC_MAPPING, "mc", "toy", revision="abc")
    _check_mc(result)
    assert calls == [("org/toy", "main", "validation", {"revision": "abc"})]
    assert result.malformed[0].source == "toy: hub org/toy/main [validation]"
    assert os.environ["HF_HUB_OFFLINE"] == "1"


def test_load_hub_with_real_datasets_on_a_local_file(tmp_path, monkeypatch):
    pytest.importorskip("pyarrow")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf" / "datasets"))
    pytest.importorskip("datasets")
    path = tmp_path / "mc.jsonl"
    # the json builder needs one schema for all rows, so leave out the row without "q"
    path.write_text("\n".join(json.dumps(r) for r in MC_ROWS if "q" in r))
    result = load_hub(
        "json", None, "train", MC_MAPPING, "mc", "toy", data_files=str(path), cache_dir=str(tmp_path / "cache")
    )
    assert [(s.id, s.gold) for s in result.samples] == [("q1", "B"), ("q2", "A")]
    assert [m.reason for m in result.malformed] == ["gold index 7 out of range for 2 options"]


# ---- questions files (calibration sets, data brought to `calibrate apply`) --------------------


def test_questions_file_mixed_tasks_labelled_and_unlabelled(tmp_path):
    import json

    from jobs.answers import extract, is_correct
    from jobs.datasets.questions import load_questions

    rows = [
        {"id": "a", "question": "What is 2 plus 3?", "task": "numeric", "gold": "5"},
        {
            "id": "b",
            "question": "Which is a fruit?",
            "task": "mc",
            "choices": ["stone", "apple"],
            "gold": 1,
            "source_dataset": "arc_easy",
        },
        {"id": "c", "question": "Is snow cold?", "task": "yesno", "gold": True},
        {"id": "d", "question": "What is 7 minus 2?"},  # task from the config, no label
        {"id": "e", "question": "Pick one", "task": "mc", "choices": ["x"]},  # one option: malformed
        {"id": "f", "question": "Odd?", "task": "essay"},  # unknown task: malformed
    ]
    p = tmp_path / "q.jsonl"
    p.write_text("\n".join(json.dumps(r) for r in rows) + "\n{not json\n")
    res = load_questions(p, "mine", default_task="numeric")
    by = {s.id: s for s in res.samples}
    assert [s.id for s in res.samples] == ["a", "b", "c", "d"]
    assert (by["a"].task, by["a"].gold) == ("numeric", "5")
    assert (by["b"].gold, by["b"].choices, by["b"].meta) == ("B", ("stone", "apple"), {"source_dataset": "arc_easy"})
    assert by["c"].gold == "yes"
    assert by["d"].gold == "" and by["d"].meta == {"unlabelled": True}
    assert is_correct(extract("The answer is 5", by["d"], "flexible"), by["d"]) is False  # unknown: never correct
    assert is_correct(extract("The answer is 5", by["a"], "flexible"), by["a"]) is True
    reasons = [m.reason for m in res.malformed]
    assert len(reasons) == 3 and "wrong option count" in reasons[0] and "'essay'" in reasons[1]
    assert "invalid JSON" in reasons[2]


def test_questions_dataset_config_and_roles(tmp_path):
    import json

    from jobs.datasets.roles import load_role
    from orchestrator.config import ConfigError, load_grid

    p = tmp_path / "q.jsonl"
    p.write_text(
        "".join(
            json.dumps({"id": f"q{i}", "question": f"What is {i} plus 1?", "task": "numeric", "gold": str(i + 1)})
            + "\n"
            for i in range(10)
        )
    )
    grid = tmp_path / "g.yaml"
    grid.write_text(
        f"name: q\noutput_dir: {tmp_path}/out\nslms: [smollm2-135m]\nllms: [smollm2-135m]\n"
        f"uq: [perplexity]\ndatasets: [{{name: mine, adapter: questions, local_path: {p}}}]\n"
        f"dataset: {{limit: 4, fit_limit: 3}}\n"
    )
    r = load_grid(grid)
    ev, _ = load_role(r.datasets["mine"], r.grid.dataset, "eval")
    fit, _ = load_role(r.datasets["mine"], r.grid.dataset, "fit")
    assert len(ev) == 4 and len(fit) == 3 and not {s.id for s in ev} & {s.id for s in fit}
    from orchestrator.plan import make_plan

    # rows carry their own tasks: the greedy pass gets the longest answer budget of any task
    greedy = [u for u in make_plan(r).by_kind("gen") if u.stage == "greedy"]
    assert {u.spec.params["max_new_tokens"] for u in greedy} == {max(r.grid.decoding.max_new_tokens.values())}
    bad = grid.read_text().replace(str(p), str(tmp_path / "missing.jsonl"))
    grid.write_text(bad)
    with pytest.raises(ConfigError, match="adapter 'questions' needs local_path, an existing .jsonl"):
        load_grid(grid)


# ---- encodings (issue 12.1): one bad byte is one malformed row; a whole file in another encoding
# is one clear error naming the file and the `encoding:` to declare
def _questions_file(tmp_path, lines: list[bytes]):
    p = tmp_path / "user.jsonl"
    p.write_bytes(b"\n".join(lines) + b"\n")
    return p


def test_one_non_utf8_line_is_one_malformed_row(tmp_path):
    from jobs.datasets.questions import load_questions

    good = [
        json.dumps({"question": f"What is {i}+1?", "answer": str(i + 1), "task": "numeric"}).encode() for i in range(14)
    ]
    bad = json.dumps(
        {"question": "Caf\u00e9 costs 3, tea 2: total?", "answer": "5", "task": "numeric"}, ensure_ascii=False
    ).encode("latin-1")
    res = load_questions(_questions_file(tmp_path, good[:7] + [bad] + good[7:]), "user")
    assert len(res.samples) == 14
    [m] = res.malformed
    assert m.row == 7 and "not valid utf-8: byte 0xe9" in m.reason and "of line 8" in m.reason
    assert "`encoding:`" in m.reason


def test_a_latin1_file_is_one_clear_error_then_reads_with_its_encoding(tmp_path):
    from jobs.datasets.questions import load_questions
    from jobs.types import DataError

    lines = [
        json.dumps(
            {"question": f"Caf\u00e9 n\u00b0{i}: 2+{i}?", "answer": str(2 + i), "task": "numeric"}, ensure_ascii=False
        ).encode("latin-1")
        for i in range(5)
    ]
    path = _questions_file(tmp_path, lines)
    with pytest.raises(DataError, match=r"user.jsonl: 5 of 5 lines are not valid utf-8.*`encoding: latin-1`"):
        load_questions(path, "user")
    res = load_questions(path, "user", encoding="latin-1")
    assert len(res.samples) == 5 and not res.malformed and res.samples[0].question.startswith("Caf\u00e9")


def test_unknown_encoding_is_refused_at_config_time(tmp_path):
    from orchestrator.config import ConfigError, load_grid

    q = tmp_path / "q.jsonl"
    q.write_text(json.dumps({"question": "1+1?", "answer": "2", "task": "numeric"}) + "\n")
    f = tmp_path / "conf" / "grid" / "g.yaml"
    f.parent.mkdir(parents=True)
    f.write_text(
        f"name: g\nslms: [smollm2-135m]\nllms: [gemma3-270m]\nuq: [perplexity]\n"
        f"datasets: [{{name: mine, adapter: questions, local_path: {q}, encoding: latin-9x}}]\n"
    )
    with pytest.raises(ConfigError, match=r"dataset 'mine': encoding='latin-9x' is not a known text encoding"):
        load_grid(f)
