"""FeaturePipeline: fit declared features on training data, then transform any batch.

`fit` runs one parallel pass over a Ray Dataset per depth of fitted steps (imputation before a
fitted transform before a scaler makes three) and keeps only JSON state. `transform(batch)` is
the single function that training (Ray Data map_batches), batch inference and an online Serve
replica all call, so features cannot drift apart between them.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
from omegaconf import OmegaConf

from keel.config.schema import FeaturesConfig, FeatureSpec
from keel.data.batch import Batch, reduce_batches, to_table
from keel.errors import FeatureError
from keel.storage import read_json, write_json

from .steps import Step, build, inputs, read

FORMAT = "keel.features/2"


class FeaturePipeline:
    def __init__(self, specs: dict[str, FeatureSpec], state: dict[str, list] | None = None):
        self.specs = dict(specs)
        self.steps: dict[str, list[Step]] = {name: build(s) for name, s in self.specs.items()}
        self.state = state or {
            name: [None if step.fitted else {} for step in steps]
            for name, steps in self.steps.items()
        }

    @classmethod
    def from_config(cls, features: FeaturesConfig) -> FeaturePipeline:
        return cls(features.columns)

    # ------------------------------------------------------------------------- fitting

    @property
    def is_fitted(self) -> bool:
        return not self._pending()

    def fit(self, data: Any, batch_size: int = 65_536) -> FeaturePipeline:
        """Learn every fitted step's state from `data` (a Ray Dataset or a local table)."""
        if hasattr(data, "select_columns") and not isinstance(data, pa.Table):
            data = data.select_columns(self.input_columns)  # the reader skips other columns
        while pending := self._pending():
            stats = reduce_batches(
                data,
                lambda b, p=pending: self._partials(b, p),
                lambda a, b, p=pending: self._merge(a, b, p),
                batch_size,
            )
            for name, i in pending.items():
                if name not in stats:
                    raise FeatureError(f"cannot fit feature '{name}': the training data is empty")
                self.state[name][i] = self.steps[name][i].finalize(stats[name])
        return self

    def _pending(self) -> dict[str, int]:
        """For each feature, the first step still waiting for its state."""
        return {name: states.index(None) for name, states in self.state.items() if None in states}

    def _partials(self, batch: pa.Table, pending: dict[str, int]) -> dict:
        if not len(batch):
            return {}
        return {
            name: self.steps[name][i].partial(self._run(name, batch, i), batch)
            for name, i in pending.items()
        }

    def _merge(self, a: dict, b: dict, pending: dict[str, int]) -> dict:
        out = {**a, **b}
        for name in a.keys() & b.keys():
            out[name] = self.steps[name][pending[name]].merge(a[name], b[name])
        return out

    # ------------------------------------------------------------------------- applying

    def _run(self, name: str, batch: pa.Table, upto: int) -> Any:
        x = read(self.specs[name], batch)
        for step, state in zip(self.steps[name][:upto], self.state[name][:upto], strict=True):
            x = step.apply(x, batch, state)
        return x

    def transform(self, batch: Batch) -> np.ndarray:
        """Feature matrix (rows x output_columns, float32) for any batch of raw rows."""
        if not self.is_fitted:
            raise FeatureError(f"fit the pipeline first: unfitted features {list(self._pending())}")
        table = to_table(batch)
        missing = [c for c in self.input_columns if c not in table.column_names]
        if missing:
            raise FeatureError(f"missing input column(s) {missing}; the features need them")
        if not len(table):
            return np.zeros((0, len(self.output_columns)), np.float32)
        out = np.empty((len(table), len(self.output_columns)), np.float32)
        j = 0
        for name, steps in self.steps.items():
            part = self._run(name, table, len(steps))
            out[:, j : j + part.shape[1]] = part
            j += part.shape[1]
        return out

    def transform_batch(self, batch: Batch, keep: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
        """For Ray Data map_batches: {"features": matrix} plus the `keep` columns unchanged."""
        table = to_table(batch)
        out = {"features": self.transform(table)}
        out.update({k: table.column(k).to_numpy(zero_copy_only=False) for k in keep})
        return out

    @property
    def input_columns(self) -> list[str]:
        cols = [c for spec in self.specs.values() for c in [*inputs(spec), spec.by] if c]
        return list(dict.fromkeys(cols))

    @property
    def output_columns(self) -> list[str]:
        return [c for name in self.steps for c in self._names(name)]

    def _names(self, name: str) -> list[str]:
        """One feature's output columns: those of its last step that names any."""
        steps, states = self.steps[name], self.state[name]
        named = (s.names(name, st) for s, st in zip(steps, states, strict=True))
        return [n for n in named if n is not None][-1]

    def fold(self, by_output: np.ndarray) -> np.ndarray:
        """Values per output column (an explanation's attributions, (n, outputs)) summed back
        to the input columns they came from, (n, len(input_columns)): a one-hot, hashed or
        date-parts block folds to its column; a feature that reads several columns (ratio,
        difference, a group statistic) splits its share evenly among them. Sums are kept."""
        where = {c: i for i, c in enumerate(self.input_columns)}
        share = np.zeros((len(self.output_columns), len(where)))
        start = 0
        for name, spec in self.specs.items():
            width = len(self._names(name))
            sources = list(dict.fromkeys(c for c in [*inputs(spec), spec.by] if c))
            for c in sources:
                share[start : start + width, where[c]] += 1.0 / len(sources)
            start += width
        return np.asarray(by_output, np.float64) @ share

    # ------------------------------------------------------------------------- state

    def to_state(self) -> dict:
        """JSON-serializable state: the declared specs and everything fitted. No pickle."""
        if not self.is_fitted:
            raise FeatureError("only a fitted pipeline has state to save")
        return {
            "format": FORMAT,
            "output_columns": self.output_columns,
            "features": {
                name: {
                    "spec": OmegaConf.to_container(OmegaConf.structured(spec), enum_to_str=True),
                    "state": self.state[name],
                }
                for name, spec in self.specs.items()
            },
        }

    @classmethod
    def from_state(cls, state: dict) -> FeaturePipeline:
        if state.get("format") != FORMAT:
            raise FeatureError(
                f"feature state format {state.get('format')!r} is not {FORMAT!r}: refit features"
            )
        schema = OmegaConf.structured(FeatureSpec)
        specs = {
            name: OmegaConf.to_object(OmegaConf.merge(schema, f["spec"]))
            for name, f in state["features"].items()
        }
        return cls(specs, {name: f["state"] for name, f in state["features"].items()})

    def save(self, uri: str) -> None:
        write_json(uri, self.to_state())

    @classmethod
    def load(cls, uri: str) -> FeaturePipeline:
        return cls.from_state(read_json(uri))
