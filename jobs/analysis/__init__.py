"""The grid-level analysis: what is computed over a grid's settings once their units are done.

The other half of ``jobs/`` is the work of a unit (stages and the generation engine, scoring,
answers, prompts, backends, datasets, uq, the store and its schemas); this package reads the store
that work wrote and never runs a model:

  inputs       typed, read-only inputs: which settings, where their results are (``GridView``)
  findings     the paper's findings: rankings, distances, calibration pools, transfer
  calibration  thresholds from calibration data and their transfer to unseen datasets
  cost_report  the report's cost section (cost per query, cost frontier)
  report       the HTML report
  results      the notebook API behind ``uqroute.open``

Figures and HTML pieces shared with a setting unit's curve PNG are in ``jobs.figures``.
"""
