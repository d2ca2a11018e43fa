"""The driver never imports torch: planning a grid and its CLI run without it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_driver_side_imports_no_torch():
    code = (
        "import sys\n"
        "import orchestrator.cli, orchestrator.runner, orchestrator.scheduler, orchestrator.mlflow_sink\n"
        "from orchestrator.config import load_grid\n"
        "from orchestrator.plan import make_plan\n"
        "p = make_plan(load_grid('conf/grid/paper.yaml'))\n"
        "from orchestrator.mlflow_sink import MlflowSink\n"
        "import mlflow, jobs.scoring, jobs.metrics, jobs.uq\n"
        "bad = [m for m in ('torch', 'transformers') if m in sys.modules]\n"
        "assert not bad, bad\n"
        "print(len(p.settings))\n"
    )
    assert _run_fresh(code) == "1792"


def test_the_python_api_imports_no_torch_ray_or_mlflow():
    """``import uqroute`` and opening a folder's plan (``uqroute.open``'s first step) stay driver-side."""
    code = (
        "import sys\n"
        "import uqroute\n"
        "from orchestrator.config import load_grid\n"
        "from orchestrator.plan import make_plan\n"
        "import tempfile\n"
        "r = load_grid('tests/conf/grid/tiny.yaml', [f'output_dir={tempfile.mkdtemp()}/out'])\n"
        "res = uqroute.Results(r, make_plan(r))\n"
        "assert res.select(dataset='addsub', uq='ptrue')[0].uq == 'ptrue'\n"
        "assert res.records(dataset='addsub').empty  # nothing run: no rows, no error\n"
        "bad = [m for m in ('torch', 'transformers', 'ray', 'mlflow') if m in sys.modules]\n"
        "assert not bad, bad\n"
        "print(len(res.views))\n"
    )
    assert _run_fresh(code) == "14"


def _run_fresh(code: str) -> str:
    """Run ``code`` in a fresh interpreter at the repository root; its stdout (it must exit 0)."""
    res = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    return res.stdout.strip()
