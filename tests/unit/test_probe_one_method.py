"""probe and ood_probe are one method fitted two ways (issue 9, item 8): one module, one body, the
names, parameters and defaults they had as two files."""

from __future__ import annotations

import inspect

import numpy as np

from jobs.uq import UQ_METHODS, compute


def test_ood_probe_is_the_probe_fitted_on_other_datasets():
    from jobs.uq import probe

    assert UQ_METHODS.get("probe") is probe.METHOD and UQ_METHODS.get("ood_probe") is probe.OOD_METHOD
    p, o = probe.METHOD, probe.OOD_METHOD
    assert (p.name, p.fit, p.requires) == ("probe", "in_domain", ("hidden_state",))
    assert (o.name, o.fit, o.requires) == ("ood_probe", "other_datasets", ("hidden_state",))
    assert p.description == "1 - P(correct) from an MLP probe on hidden states, trained in-domain"
    assert o.description == "1 - P(correct) from an MLP probe on hidden states, trained on other datasets"
    defaults = {
        m.name: {k: v.default for k, v in inspect.signature(m.fn).parameters.items() if v.kind is v.KEYWORD_ONLY}
        for m in (p, o)
    }
    common = {"epochs": 20, "hidden": (256, 128, 64), "batch_size": 32, "seed": 0}
    assert defaults == {"probe": common | {"lr": 5e-4}, "ood_probe": common | {"lr": 1e-4}}


def test_the_two_probes_score_as_the_shared_body_does():
    from jobs.uq.probe import METHOD, OOD_METHOD, probe_uncertainty

    rng = np.random.default_rng(0)
    fit = {"hidden_state": rng.normal(size=(40, 6)).astype(np.float32), "correct": rng.random(40) < 0.5}
    stats = {"hidden_state": rng.normal(size=(7, 6)).astype(np.float32)}
    kw = {"epochs": 3, "hidden": (8,), "batch_size": 8, "seed": 1}
    for m, lr in ((METHOD, 5e-4), (OOD_METHOD, 1e-4)):
        want = probe_uncertainty(stats, fit, lr=lr, **kw)
        np.testing.assert_array_equal(compute(m, stats, fit, **kw), want)
