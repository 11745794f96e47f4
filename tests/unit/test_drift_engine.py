"""keel's drift engine against Evidently's own functions on the hand-made files in
tests/data/own (multiclass penguins, binary tumors, regression rentals): the same method per
column (Evidently's default choice below and above 1,000 reference rows), the same score and
the same verdict, with and without a planted shift. Evidently is the oracle here: each column
goes through `get_stattest` and the StatTest it returns, as its ValueDrift metric does."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from keel.config import load
from keel.config.schema import DriftSpec
from keel.monitoring import drift
from tests.unit.test_infer import OWN, infer_own

FILES = [("penguins", "species"), ("tumors", "diagnosis"), ("rentals", "rentals")]


@pytest.fixture(scope="module")
def monitor():
    return load(["experiment=churn"]).monitor


def own(name: str, target: str) -> tuple[pd.DataFrame, dict]:
    """The file as pandas reads it, under keel's column names, and its monitored columns."""
    dataset = infer_own(name, target).dataset
    df = pd.read_csv(OWN / f"{name}.csv")
    df = df.rename(columns={s.source: c for c, s in dataset.columns.items() if s.source})
    columns = {
        c: s
        for c, s in dataset.columns.items()
        if c != target and c in drift.kinds_of(dataset.columns) and c != dataset.id_column
    }
    return df, columns


def shifted(df: pd.DataFrame, columns: dict, rows: int, seed: int) -> pd.DataFrame:
    """`rows` rows drawn from the file with its first numerical column scaled by 1.3 and 30% of
    its first categorical column moved to that column's rarest value."""
    out = df.sample(rows, replace=True, random_state=seed).reset_index(drop=True)
    kinds = drift.kinds_of(columns)
    number = next(c for c, k in kinds.items() if k == drift.NUMERICAL)
    out[number] = out[number] * 1.3
    if category := next((c for c, k in kinds.items() if k == drift.CATEGORICAL), None):
        rare = out[category].value_counts().index[-1]
        moved = np.random.default_rng(seed).random(rows) < 0.3
        out.loc[moved, category] = rare
    return out


def evidently(ref: pd.Series, cur: pd.Series, kind: str) -> dict:
    """Evidently's verdict for one column, as its ValueDrift metric computes it."""
    from evidently.legacy.calculations.stattests.registry import get_stattest
    from evidently.legacy.core import ColumnType

    ref, cur = (s.replace([-np.inf, np.inf], np.nan).dropna() for s in (ref, cur))
    test = get_stattest(ref, cur, ColumnType(kind), None)
    result = test(ref, cur, ColumnType(kind), None)
    return {
        "method": test.name,
        "score": float(result.drift_score),
        "threshold": float(result.actual_threshold),
        "drifted": bool(result.drifted),
    }


@pytest.mark.parametrize(("name", "target"), FILES)
@pytest.mark.parametrize("reference_rows", [200, 1_500])  # Evidently's defaults differ
@pytest.mark.parametrize("shift", [False, True])
def test_engine_matches_evidently_column_by_column(monitor, name, target, reference_rows, shift):
    df, columns = own(name, target)
    ref = df.sample(reference_rows, replace=reference_rows > len(df), random_state=1)
    same = df.sample(3_000, replace=True, random_state=2)
    cur = shifted(df, columns, 3_000, 2) if shift else same
    ref, cur = drift.frame(ref, columns, []), drift.frame(cur, columns, [])

    ours = drift.compare(cur, ref, columns, monitor).columns

    kinds = drift.kinds_of(columns)
    assert set(ours) == set(kinds)
    for column, kind in kinds.items():
        theirs = evidently(ref[column], cur[column], kind)
        assert {**ours[column].to_json(), "score": 0} == {**theirs, "score": 0}, column
        assert ours[column].score == pytest.approx(theirs["score"], rel=1e-9, abs=1e-12), column
    drifted = {c for c, r in ours.items() if r.drifted}
    assert bool(drifted) is shift or reference_rows == 200  # small samples may flag noise
    if shift:
        assert next(c for c, k in kinds.items() if k == drift.NUMERICAL) in drifted


def test_a_method_keel_does_not_compute_is_run_by_evidently(monitor):
    df, columns = own("rentals", "rentals")
    ref = drift.frame(df.iloc[:300], columns, [])
    cur = drift.frame(shifted(df, columns, 1_000, 3), columns, [])
    psi = replace(monitor, columns={"temperature_c": DriftSpec("psi", 0.2)})
    ours = drift.compare(cur, ref, columns, psi).columns["temperature_c"]

    from evidently.legacy.calculations.stattests import psi_stat_test
    from evidently.legacy.core import ColumnType

    theirs = psi_stat_test(ref["temperature_c"], cur["temperature_c"], ColumnType.Numerical, 0.2)
    assert ours.to_json() == {
        "method": "psi",
        "score": pytest.approx(theirs.drift_score),
        "threshold": 0.2,
        "drifted": bool(theirs.drifted),
    }


def test_default_drift_does_not_import_evidently():
    code = (
        "import sys\n"
        "from keel.config import load\n"
        "from keel.monitoring import drift\n"
        "from tests.unit.test_drift_engine import own, shifted\n"
        "df, columns = own('penguins', 'species')\n"
        "ref = drift.frame(df, columns, [])\n"
        "cur = drift.frame(shifted(df, columns, 2000, 1), columns, [])\n"
        "result = drift.compare(cur, ref, columns, load(['experiment=churn']).monitor)\n"
        "print(len(result.columns), 'evidently' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.split()[-2:] == ["7", "False"]  # island .. year, no species
