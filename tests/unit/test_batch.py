"""keel.data.batch: the dataset fingerprint recorded in model lineage."""

import pyarrow as pa

from keel.data.batch import fingerprint

TABLE = pa.table({"x": [1, 2, 3, 4], "c": ["a", "b", None, "d"], "y": [0.5, 1.5, 2.5, 3.5]})


def test_fingerprint_ignores_layout_and_order():
    fp = fingerprint(TABLE)
    assert fingerprint(TABLE) == fp and fp.startswith("rows=4:")
    chunked = pa.concat_tables([TABLE.slice(0, 1), TABLE.slice(1, 2), TABLE.slice(3)])
    assert fingerprint(chunked) == fp
    assert fingerprint(TABLE.take([3, 1, 0, 2])) == fp  # blocks arrive in any order on Ray


def test_fingerprint_changes_with_values_rows_and_schema():
    fp = fingerprint(TABLE)
    assert fingerprint(TABLE.slice(0, 3)) != fp
    assert fingerprint(TABLE.set_column(0, "x", pa.array([1, 2, 3, 5]))) != fp
    assert fingerprint(TABLE.rename_columns(["x2", "c", "y"])) != fp
    assert fingerprint(TABLE.set_column(0, "x", pa.array([1, 2, 3, 4], pa.int32()))) != fp
