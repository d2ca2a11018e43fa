"""The one per-sample record schema, and its one writer.

Every work unit writes Parquet parts ``<store>/<kind>/<key>/part-NNNNN.parquet`` (one per
fixed chunk of samples, so a killed unit resumes at chunk level) and then, last,
``manifest.json``: the manifest is the fact on disk that the unit is complete. Files are
written to a temp name in the same folder, fsync'd and renamed (``atomic_write``), so a reader
never sees half a file and a crash never leaves one under its name. The manifest lists every file
of its unit (``file_record``: size, sha256, Parquet rows and footer hash) and its own checksum;
``jobs.store.check_unit`` verifies them. A full disk raises ``StoreFull`` naming the folder and
its free space.

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
                          at scoring time by jobs.judge.answer_logprob, not stored
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
                 "flexible:last_number", "none"), answer_prob_rule (jobs.judge.ANSWER_PROB_RULES);
                 under ``settings/<unit key>`` (``orchestrator.plan.unit_key``: a new result of the
                 same setting gets a new folder), whose manifest.json names both the unit key
                 (``key``) and the setting's identity (``setting_hash``, its MLflow run)
setting cost.parquet (``jobs/cost.py``): sample_id; per component slm / uq / llm: <c>_prompt_tokens,
                 <c>_new_tokens, <c>_seconds, <c>_passes (floats); slm_usd, uq_usd, llm_usd (priced
                 with the table named in the file's metadata)
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from jobs.errors import StoreFull  # raised here (a full disk), defined with the other failure types

SCHEMA_VERSION = "1"
MANIFEST = "manifest.json"
#: suffix of the temp files of ``atomic_write`` (a leftover one is a write cut off by a crash)
TMP_SUFFIX = ".tmp"
#: the content hash of the files a manifest lists (``file_record``)
HASH = "sha256"


def unit_dir(store: Path | str, kind: str, key: str) -> Path:
    return Path(store) / kind / key


def part_path(udir: Path, index: int) -> Path:
    return udir / f"part-{index:05d}.parquet"


NO_SPACE = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def no_space_message(path: Path, exc: OSError) -> str:
    """One line: which file could not be written, in which folder, and how much space is left there."""
    folder = Path(path).parent
    try:
        du = shutil.disk_usage(folder)
        space = f"{_human(du.free)} free of {_human(du.total)}"
    except OSError:
        space = "free space unknown"
    return (
        f"no space left writing {Path(path).name} in {folder} ({space}; {exc.strerror or exc}): "
        f"free space there (or point store_dir elsewhere) and run `uqroute resume` on the output folder; "
        f"finished units are kept and nothing half-written counts as done"
    )


def _write_synced(tmp: str, data: bytes) -> None:
    """Write ``data`` to ``tmp`` and make it durable (fsync) before it is renamed into place."""
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (a crash after it cannot bring back the old name)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # a filesystem that cannot open folders (some FUSE): the rename is still atomic
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` so that no reader (and no crash) ever sees half of it: a temp file
    in the same folder (``.<name>.<random>.tmp``), fsync, atomic rename, fsync of the folder. A
    full disk raises ``StoreFull`` naming the folder and its free space; the temp file is removed."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TMP_SUFFIX)
        os.close(fd)
    except OSError as exc:
        if exc.errno in NO_SPACE:
            raise StoreFull(no_space_message(path, exc), exc.errno) from exc
        raise
    try:
        _write_synced(tmp, data)
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except OSError as exc:
        if exc.errno in NO_SPACE:
            raise StoreFull(no_space_message(path, exc), exc.errno) from exc
        raise
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def _atomic_write_bytes(path: Path, write_fn) -> None:
    """``write_fn(buffer)`` fills an in-memory file, then ``atomic_write`` puts it in place."""
    buf = io.BytesIO()
    write_fn(buf)
    atomic_write(Path(path), buf.getvalue())


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
    _atomic_write_bytes(Path(path), lambda buf: pq.write_table(table, buf))
    return Path(path)


def write_json(path: Path, obj) -> Path:
    return atomic_write(Path(path), json.dumps(obj, indent=2, sort_keys=True, default=str).encode())


def read_json(path: Path):
    with open(path) as f:
        return json.load(f)


def readable_parquet(path: Path) -> bool:
    """Whether ``path`` is a whole Parquet file as far as its ends tell: magic bytes at both ends
    and a footer that parses (cheap: the footer only). A file cut short fails here."""
    try:
        with open(path, "rb") as f:
            if f.read(4) != PARQUET_MAGIC:
                return False
        pq.read_metadata(path)
        return True
    except Exception:  # noqa: BLE001 - any failure to parse is "not readable"
        return False


def existing_parts(udir: Path) -> set[int]:
    """Indices of the parts of a unit that are on disk and readable (a part left unreadable by a
    crash or a damaged disk is not counted: its chunk runs again and the file is replaced)."""
    if not udir.is_dir():
        return set()
    return {int(p.stem.split("-")[1]) for p in udir.glob("part-*.parquet") if readable_parquet(p)}


PARQUET_MAGIC = b"PAR1"


def parquet_footer(data: bytes) -> bytes:
    """The footer of a Parquet file's bytes: the file metadata (row count, schema, where every
    column chunk is), its 4-byte length and the closing magic. ValueError when they are not there."""
    if len(data) < 12 or data[:4] != PARQUET_MAGIC or data[-4:] != PARQUET_MAGIC:
        raise ValueError("Parquet magic bytes not found at both ends")
    n = int.from_bytes(data[-8:-4], "little")
    if n + 12 > len(data):
        raise ValueError(f"footer length {n} exceeds the file ({len(data)} bytes)")
    return data[-(n + 8) :]


def digest(data: bytes) -> str:
    return hashlib.new(HASH, data).hexdigest()


def file_record(path: Path) -> dict:
    """What a manifest records of one file of its unit: ``size`` (bytes) and ``sha256`` of the whole
    content; for Parquet also ``rows`` (from its footer) and ``footer_sha256``, the hash of the
    footer alone, so a shallow check reads a few KB per file and still knows the footer (row
    count, schema, column-chunk offsets) is the one written. Raises ValueError naming the file
    when a Parquet file does not parse."""
    path = Path(path)
    data = path.read_bytes()
    rec: dict = {"size": len(data), HASH: digest(data)}
    if path.suffix == ".parquet":
        try:
            footer = parquet_footer(data)
            rows = pq.ParquetFile(io.BytesIO(data)).metadata.num_rows
        except Exception as exc:  # noqa: BLE001 - named below
            raise ValueError(f"{path}: not a readable Parquet file ({exc}); it cannot be recorded as done") from exc
        rec |= {"rows": int(rows), f"footer_{HASH}": digest(footer)}
    return rec


def canonical(d: dict) -> str:
    return json.dumps(d, sort_keys=True, default=str, separators=(",", ":"))


def manifest_checksum(manifest: dict) -> str:
    """The hash of a manifest's own content (every field but ``checksum``), as JSON reads it back."""
    body = {k: v for k, v in json.loads(canonical(manifest)).items() if k != "checksum"}
    return digest(canonical(body).encode())


def unit_files(udir: Path) -> list[Path]:
    """The files of a unit folder a manifest lists: every file but the manifest and hidden (temp) files."""
    return sorted(p for p in Path(udir).iterdir() if p.is_file() and p.name != MANIFEST and not p.name.startswith("."))


def finish_unit(udir: Path, manifest: dict) -> dict:
    """Write the manifest last: from now on the unit counts as done. It records every file of the
    unit (``file_record``: size, sha256, Parquet row count and footer hash) and its own checksum.
    Temp files a crash left in the folder are removed first (every writer of this unit is done).
    Returns the manifest as written."""
    udir = Path(udir)
    udir.mkdir(parents=True, exist_ok=True)
    for p in udir.glob(f".*{TMP_SUFFIX}"):
        p.unlink(missing_ok=True)
    files = {p.name: file_record(p) for p in unit_files(udir)}
    manifest = dict(manifest, schema_version=SCHEMA_VERSION, hash=HASH, files=files)
    manifest.pop("checksum", None)
    manifest["checksum"] = manifest_checksum(manifest)
    write_json(udir / MANIFEST, manifest)
    return manifest


def read_unit(udir: Path, columns: Iterable[str] | None = None) -> pa.Table:
    parts = sorted(udir.glob("part-*.parquet"))
    if not parts:
        raise FileNotFoundError(f"no Parquet parts in {udir}")
    tables = [pq.read_table(p, columns=list(columns) if columns else None) for p in parts]
    return pa.concat_tables(tables, promote_options="default")
