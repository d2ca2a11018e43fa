"""The tiny grid's store holds the rows it held before the typed units / Store / typed config refactor.

``tests/fixtures/tiny_rows.json.gz`` was recorded by ``tests/fixtures/record_tiny_rows.py`` at the
commit before that refactor: every unit folder (kind, key), every Parquet file's rows and every
setting manifest's metrics, normalised by ``tests.tiny_rows`` (timing masked, hidden states
summarised). The store of the ``tiny_run`` fixture (the same grid, through Ray into MLflow) is
read the same way -- pyarrow and json on the files, nothing of the code that wrote them -- and
must match: the same unit keys, files, columns and rows; strings, ints, bools and None exactly,
floats within ``TOLERANCE``.

How ``TOLERANCE`` was sized. Two runs of the recorder on one machine agree bit for bit (every
float difference 0). Across CPUs, fp32 SmolLM2 statistics differ by ~1.5e-4 (relative); to see
what that does downstream, the gen Parquet floats of a recorded store (token log-probs and
entropies, hidden states, p(True)) were multiplied by 1 + U(-1.5e-4, 1.5e-4) and the score and
setting units recomputed from them, with 6 seeds. Largest differences seen:

  gen            token_entropy 9.2e-4, token_logprobs 4.1e-4, ptrue_prob 1.4e-4 (abs); a hidden
                 state's sum 1e-5 * sqrt(len * sumsq) (1.1 % of itself: cancellation), its sum of
                 squares 1.5e-4 relative
  untrained      perplexity 3.3e-3 abs at 11.6 (2.8e-4 rel), ptrue 1.4e-4, avg_token_prob 2.9e-5
  trained        probe 7.4e-3 abs (1.5 % rel, at 0.49), ood_probe 1.5e-3 abs (uncertainties in [0, 1])
  metrics        none (AUROC, areas, bootstrap bounds, call rates: no rank moved); no string, int,
                 bool or None changed

so rel 1e-3 / abs 2e-3 for everything but the trained methods' score and setting units (probe,
ood_probe: rel / abs 2e-2, 2.7 times the largest difference seen), and a hidden state's sum within
1e-3 * sqrt(len * sumsq). The tiny grid's SmolLM2 is fp32 (issue 16): the rows hold on every CPU
kind within that tolerance, with no skip by CPU kind; CI (.ci/run) checks it natively and with
torch limited to AVX2 (ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2),
whose largest drift from the AVX-512 recording is stated in tests/tiny_rows.py (``TOLERANCE``).
"""

from __future__ import annotations

from pathlib import Path

from tests.tiny_rows import TOLERANCE, compare, load_fixture, read_store

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "tiny_rows.json.gz"


def test_tiny_grid_store_rows_are_the_recorded_ones(tiny_run):
    doc = load_fixture(FIXTURE)
    actual = read_store(tiny_run["store_after_run"])
    diffs = compare(doc["units"], actual, TOLERANCE)
    assert not diffs, (
        f"the tiny grid's store differs from {FIXTURE.name} (recorded on {doc['cpu']}) (first {len(diffs)}):\n"
        + "\n".join(diffs)
    )
