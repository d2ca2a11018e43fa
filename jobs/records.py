"""The one per-sample record schema, and its one writer.

Every work unit writes Parquet parts ``<store>/<kind>/<key>/part-NNNNN.parquet`` (one per
fixed chunk of samples, so a killed unit resumes at chunk level) and then, last,
``manifest.json``: the manifest is the fact on disk that the unit is complete. Files are
written to a temp name and renamed, so a reader never sees half a file.

Schema version ``SCHEMA_VERSION`` is stored in every file's metadata; each file's columns and
their pyarrow types are declared, per record kind and versioned, in ``jobs/store.py`` (``schema``;
a stage's own columns in its ``Stage.columns``), which also owns the folder layout. Columns:

common to every generation unit (stage ``greedy`` / ``samples`` / ``ptrue`` /
``verbal_1s`` / ``verbal_2s`` of an SLM, and ``llm`` answers):
  sample_id (str)        id of the sample within its dataset
  dataset (str), role (str: eval | fit), gold (str), task (str)
  prompt (str)           the rendered prompt text sent to the model
  n_prompt_tokens (int), n_new_tokens (int), latency_s (float)
  error (str | null)     what went wrong for this sample; other columns are null then
stage greedy (and llm):
  raw_output (str)        the generated answer, kept so extraction can be re-run
  token_logprobs (list<double>), token_entropy (list<double>)  per new token (an HTTP SLM's
                          entropy is the top-k approximation of jobs/backends/openai_http.py)
  answer_logprob (float)  log p of the option-letter token of the answer (mc), else NaN; computed
                          at scoring time by jobs.scoring.answer_logprob, not stored
  hidden_state (list<double>, float32 values)  probe-layer hidden state at the last new token; null for an HTTP SLM
  prompt_hidden_state (list<double>, float32 values)  the same layer at the last prompt token (the learned routers'
                          query representation); null for an HTTP SLM and in stores written before it
stage samples:  sampled_texts (list<str>), sampled_n_tokens (list<int>)
stage ptrue:    ptrue_prob (float)
stage verbal_1s: verbal_1s_raw (str), verbal_1s_conf (float, NaN if unparseable)
stage verbal_2s: verbal_2s_raw (str), verbal_2s_conf (float)
score units:    sample_id, uncertainty (float, NaN = method could not score); one unit per (SLM, UQ
                method, dataset, role): role fit holds the calibration rows (trained methods scored
                out-of-fold there), manifest.json says role and crossfit folds
setting records: sample_id, setting, setting_hash, slm_answer, slm_correct, llm_answer, llm_correct,
                 uncertainty, route_rank (0 = first sent to the LLM, -1 = dropped by the NaN policy); provenance: extraction_rule and
                 llm_extraction_rule (jobs.answers.Extraction.rule, e.g. "strict:the_answer_is",
                 "flexible:last_number", "none"), answer_prob_rule (jobs.scoring.ANSWER_PROB_RULES);
                 under ``settings/<unit key>`` (``orchestrator.plan.unit_key``: a new result of the
                 same setting gets a new folder), whose manifest.json names both the unit key
                 (``key``) and the setting's identity (``setting_hash``, its MLflow run)
setting cost.parquet (``jobs/cost.py``): sample_id; per component slm / uq / llm: <c>_prompt_tokens,
                 <c>_new_tokens, <c>_seconds, <c>_passes (floats); slm_usd, uq_usd, llm_usd (priced
                 with the table named in the file's metadata)
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

SCHEMA_VERSION = "1"
MANIFEST = "manifest.json"


def unit_dir(store: Path | str, kind: str, key: str) -> Path:
    return Path(store) / kind / key


def part_path(udir: Path, index: int) -> Path:
    return udir / f"part-{index:05d}.parquet"


def _atomic_write_bytes(path: Path, write_fn) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write_fn(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_table(
    path: Path, rows: list[dict] | pa.Table, meta: dict | None = None, schema_tag: str | None = None
) -> Path:
    """Write a Table atomically as Parquet with schema metadata. The store's files are written with
    their declared schemas by ``jobs.store.write_rows`` (which calls this with ``schema_tag``); a
    list of dicts is typed by inference (ad-hoc files only)."""
    table = rows if isinstance(rows, pa.Table) else pa.Table.from_pylist(rows)
    md = dict(table.schema.metadata or {})
    md[b"uqroute_schema_version"] = SCHEMA_VERSION.encode()
    if schema_tag:
        md[b"uqroute_schema"] = schema_tag.encode()
    if meta:
        md[b"uqroute_meta"] = json.dumps(meta, sort_keys=True, default=str).encode()
    table = table.replace_schema_metadata(md)
    _atomic_write_bytes(Path(path), lambda tmp: pq.write_table(table, tmp))
    return Path(path)


def write_json(path: Path, obj) -> Path:
    def w(tmp):
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=2, sort_keys=True, default=str)

    _atomic_write_bytes(Path(path), w)
    return Path(path)


def read_json(path: Path):
    with open(path) as f:
        return json.load(f)


def is_complete(udir: Path) -> bool:
    return (udir / MANIFEST).is_file()


def existing_parts(udir: Path) -> set[int]:
    if not udir.is_dir():
        return set()
    return {int(p.stem.split("-")[1]) for p in udir.glob("part-*.parquet")}


def finish_unit(udir: Path, manifest: dict) -> None:
    """Write the manifest last: from now on the unit counts as done."""
    manifest = dict(manifest, schema_version=SCHEMA_VERSION)
    write_json(udir / MANIFEST, manifest)


def read_unit(udir: Path, columns: Iterable[str] | None = None) -> pa.Table:
    parts = sorted(udir.glob("part-*.parquet"))
    if not parts:
        raise FileNotFoundError(f"no Parquet parts in {udir}")
    tables = [pq.read_table(p, columns=list(columns) if columns else None) for p in parts]
    return pa.concat_tables(tables, promote_options="default")
