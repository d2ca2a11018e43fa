"""What the progress bar counts: model work (samples x passes), so its ETA means something early.

Settings finish in bursts at the end of a model's passes, so a bar over settings sits at 0 for
most of a run. Model work is what takes the time: a generation unit costs its samples times its
passes (a Jaccard unit makes ``num_samples`` answers per question). Each unit's samples are
estimated from the grid's ``dataset.limit`` / ``fit_limit`` and corrected when a shard reports
what it really ran.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from jobs.units import GenSpec
from orchestrator.plan import Plan, Unit


def passes(u: Unit) -> int:
    """Model passes per sample of a generation unit: its ``num_samples`` param (a stage that draws
    several sequences per sample, ``samples``), else 1."""
    return int(u.spec.params.get("num_samples", 1)) if isinstance(u.spec, GenSpec) else 1


def estimated_samples(u: Unit) -> int | None:
    return u.spec.row_limit if isinstance(u.spec, GenSpec) else None


@dataclass
class WorkMeter:
    """Totals and completions of model work over the units still to run; light units count 0."""

    total: float = 0.0
    done: float = 0.0
    settings_total: int = 0
    settings: dict = field(default_factory=lambda: {"done": 0, "failed": 0})
    _est: dict = field(default_factory=dict)  # gen unit key -> work counted in total
    _got: dict = field(default_factory=dict)  # gen unit key -> work counted as done

    @classmethod
    def of(cls, plan: Plan, todo: set[str], unknown_samples: int = 100) -> WorkMeter:
        m = cls(settings_total=sum(1 for k in todo if plan.units[k].kind == "setting"))
        for k in todo:
            u = plan.units[k]
            if u.kind == "gen":
                m._est[k] = (estimated_samples(u) or unknown_samples) * passes(u)
        m.total = float(sum(m._est.values()))
        return m

    def event(self, event: str, u: Unit, info: dict) -> bool:
        """Account one scheduler event; True when the numbers changed."""
        if u.kind == "setting" and event in ("done", "failed", "blocked"):
            self.settings["done" if event == "done" else "failed"] += 1
            return True
        if u.kind != "gen" or u.key not in self._est:
            return False
        if event == "shard_done":
            ran = info.get("samples_run")
            n_samples = info.get("n_samples")
            if n_samples is not None and not self._got.get(u.key):  # the real size replaces the estimate
                real = int(n_samples) * passes(u)
                self.total += real - self._est[u.key]
                self._est[u.key] = real
            work = (int(ran) if ran is not None else int(n_samples or 0)) * passes(u)
            self._got[u.key] = self._got.get(u.key, 0) + work
            self.done += work
            return True
        if event == "done":  # whatever the shards did not report (a unit skipped as already done)
            rest = self._est[u.key] - self._got.get(u.key, 0)
            if rest > 0:
                self.done += rest
                self._got[u.key] = self._est[u.key]
            return True
        if event in ("failed", "blocked"):  # it will not run: drop it from the total
            self.total -= self._est[u.key] - self._got.get(u.key, 0)
            self._est[u.key] = self._got.get(u.key, 0)
            return True
        return False

    def describe(self) -> str:
        s = self.settings
        failed = f", {s['failed']} failed" if s["failed"] else ""
        return f"model work (samples x passes) | settings {s['done']}/{self.settings_total}{failed}"
