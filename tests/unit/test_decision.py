"""The retraining decision as types: decision.json keeps the shape keel has always written."""

from __future__ import annotations

import json

from keel.monitoring.decision import Contender, Decision, RetrainData, Trigger
from keel.monitoring.logs import Window
from keel.monitoring.retrain import describe

# as `keel retrain` wrote them: a promotion, and a run the verdict did not ask for
PROMOTED = {
    "model": "churn",
    "champion": {"version": 1, "holdout": {"roc_auc": 0.71, "accuracy": 0.66}},
    "trigger": {
        "verdict": "/out/reports/churn/monitor/20261106-101500-120/verdict.json",
        "window": {"start": "2026-11-06T09:15:00+00:00", "end": "2026-11-06T10:15:00+00:00"},
        "run": True,
        "why": "drift: 9 of 14 columns drifted (share 0.64 > slo.max_drift_share 0.3)",
    },
    "data": {
        "recent_labeled": 3000,
        "since": "2026-11-06T09:15:00+00:00",
        "original": 8000,
        "recent_train": 2400,
        "holdout": 600,
        "recent_weight": 3,
        "file": "/out/data/retrain/churn/20261106-101600-001.parquet",
    },
    "challenger": {
        "version": 2,
        "test": {"roc_auc": 0.80, "accuracy": 0.74},
        "holdout": {"roc_auc": 0.83, "accuracy": 0.76},
    },
    "primary": "roc_auc",
    "margin": 0.01,
    "floor": {"roc_auc": 0.7},
    "promoted": True,
    "reason": "challenger v2 roc_auc 0.8300 beats champion v1 0.7100 (margin 0.01)",
    "at": "20261106-101900-500",
}
NOT_ASKED = {
    "model": "churn",
    "champion": {"version": 1},
    "trigger": {
        "verdict": None,
        "run": False,
        "why": "no monitor verdict for churn yet: run keel monitor first, or pass --force",
    },
    "promoted": False,
    "reason": "no monitor verdict for churn yet: run keel monitor first, or pass --force",
    "at": "20261106-101900-500",
}


def test_an_existing_decision_reads_as_types_and_writes_back_the_same():
    for record in (PROMOTED, NOT_ASKED):
        decision = Decision.from_json(json.loads(json.dumps(record)), path="decision.json")
        assert decision.to_json() == record
        assert json.dumps(decision.to_json()) == json.dumps(record)  # the same key order
    d = Decision.from_json(PROMOTED)
    assert d.challenger == Contender(2, PROMOTED["challenger"]["test"], d.challenger.holdout)
    assert d.trigger.window == Window.from_dict(PROMOTED["trigger"]["window"])
    assert d.data == RetrainData(**PROMOTED["data"])


def test_describe_shows_what_the_run_reached():
    rows = dict(describe(Decision.from_json(PROMOTED, path="/out/decision.json")))
    assert rows["decision"].startswith("PROMOTED: challenger v2")
    assert rows["champion v1"] == "holdout: roc_auc 0.7100, accuracy 0.6600"
    assert rows["challenger v2"] == "holdout: roc_auc 0.8300, accuracy 0.7600"
    assert "holdout 600" in rows["data"] and rows["decision record"] == "/out/decision.json"
    short = dict(describe(Decision("churn", Contender(1), Trigger(False, "not asked"))))
    assert set(short) == {"decision", "decision record"}
