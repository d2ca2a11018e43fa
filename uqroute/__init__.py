"""uqroute's Python way in: ``uqroute.open(path)`` -> the results of a grid output folder as pandas
DataFrames (``orchestrator/results.py``). The command line is ``uqroute`` (``orchestrator/cli.py``).
Importing this package imports no torch, no Ray and no MLflow."""

from orchestrator.results import FILTERS, Results, open

__all__ = ["FILTERS", "Results", "open"]
