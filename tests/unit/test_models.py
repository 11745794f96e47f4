"""Tabular models and task heads: shapes, user models by _target_, losses and predictions."""

import re

import numpy as np
import pytest
import torch
from torch import nn

from keel.config.schema import Task
from keel.errors import ConfigError
from keel.models import MLP, Head, build


class TinyUserModel(nn.Module):
    """A user model referenced from config by `_target_`."""

    def __init__(self, in_features: int, out_features: int, width: int = 3):
        super().__init__()
        self.width = width
        self.layer = nn.Linear(in_features, out_features)

    def forward(self, x):
        return self.layer(x)


def test_mlp_layers_follow_the_config():
    model = build({"hidden_sizes": [8, 4], "dropout": 0.2, "norm": "layer"}, 5, 3)
    kinds = [type(m).__name__ for m in model.net]
    assert kinds == ["Linear", "LayerNorm", "ReLU", "Dropout"] * 2 + ["Linear"]
    assert model(torch.zeros(7, 5)).shape == (7, 3)


def test_linear_model_has_no_hidden_layers():
    model = build({"hidden_sizes": []}, 5, 1)
    assert isinstance(model, MLP) and [type(m) for m in model.net] == [nn.Linear]


def test_user_model_by_target_gets_sizes_and_params(monkeypatch):
    monkeypatch.setenv("KEEL_MODEL_MODULES", f"numpy, {__name__}")
    model = build({"_target_": f"{__name__}.TinyUserModel", "params": {"width": 9}}, 4, 2)
    assert isinstance(model, TinyUserModel) and model.width == 9
    assert model(torch.zeros(1, 4)).shape == (1, 2)


def test_a_target_outside_the_allowed_packages_is_refused_before_its_import(tmp_path, monkeypatch):
    """A registry's model config must not make serving import (and so run) a module."""
    marker = tmp_path / "ran"
    (tmp_path / "planted.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("KEEL_MODEL_MODULES", "my_models, planted_other")
    with pytest.raises(ConfigError, match=r"'planted'.*KEEL_MODEL_MODULES=planted"):
        build({"_target_": "planted.Net"}, 4, 2)
    monkeypatch.delenv("KEEL_MODEL_MODULES")
    with pytest.raises(ConfigError, match="allowed: none"):
        build({"_target_": "planted.Net"}, 4, 2)
    assert not marker.exists()


@pytest.mark.parametrize(
    ("target", "error"),
    [
        ("os.system", "not a torch.nn.Module class"),  # allowed package, not a model
        ("os.path.NoSuchThing", "not a torch.nn.Module class"),
        ("os", "not a dotted name"),
        ("os.system; rm -rf /", "not a dotted name"),
        ("__import__('os').system", "not a dotted name"),
    ],
)
def test_a_target_must_name_a_torch_module_class(monkeypatch, target, error):
    monkeypatch.setenv("KEEL_MODEL_MODULES", "os")
    with pytest.raises(ConfigError, match=re.escape(error)):
        build({"_target_": target}, 4, 2)


def test_binary_head_encodes_labels_and_predicts_probabilities():
    head = Head.fit(Task.binary_classification, np.array(["no", "yes", "no"]))
    assert head.labels == ["no", "yes"] and head.outputs == 1
    assert head.encode(np.array(["yes", "no"])).tolist() == [1.0, 0.0]
    logits = torch.tensor([[0.0], [100.0]])
    np.testing.assert_allclose(head.predict(logits), [0.5, 1.0])
    loss = head.loss(logits, torch.tensor([1.0, 1.0]))
    assert loss.item() == pytest.approx(np.log(2) / 2, rel=1e-4)


def test_binary_head_needs_two_classes():
    with pytest.raises(ValueError, match="2 target classes"):
        Head.fit(Task.binary_classification, np.array([1, 1, 1]))


def test_multiclass_head_uses_softmax_and_cross_entropy():
    head = Head.fit(Task.multiclass_classification, np.array([2, 0, 1, 2]))
    assert head.outputs == 3
    logits = torch.tensor([[0.0, 0.0, 10.0]])
    assert head.predict(logits).argmax(1).tolist() == [2]
    np.testing.assert_allclose(head.predict(logits).sum(1), [1.0], rtol=1e-6)
    expected = nn.functional.cross_entropy(logits, torch.tensor([2]))
    assert head.loss(logits, torch.tensor([2.0])).item() == pytest.approx(expected.item())


def test_regression_head_trains_on_standardized_targets_and_predicts_raw_values():
    y = np.array([100.0, 200.0, 300.0])
    head = Head.fit(Task.regression, y)
    encoded = head.encode(y)
    np.testing.assert_allclose(encoded.mean(), 0, atol=1e-6)
    np.testing.assert_allclose(encoded.std(), 1, atol=1e-6)
    np.testing.assert_allclose(head.predict(torch.from_numpy(encoded)[:, None]), y, rtol=1e-6)


def test_head_state_round_trips():
    head = Head.fit(Task.regression, np.array([1.0, 3.0]))
    assert Head(**head.to_state()) == head


@pytest.mark.parametrize("name", ["adam", "adamw", "sgd"])
def test_every_optimizer_is_fused_and_steps_as_torchs_default(name):
    from keel.training.loop import OPTIMIZERS, make_optimizer

    updated = []
    for fused in (True, False):
        torch.manual_seed(0)
        model = build({"hidden_sizes": [8]}, 5, 1)
        if fused:
            optimizer = make_optimizer(name, model.parameters(), 0.01, 0.001)
            assert optimizer.defaults["fused"] is True
        else:
            optimizer = OPTIMIZERS[name](model.parameters(), lr=0.01, weight_decay=0.001)
        for _ in range(3):
            loss = model(torch.ones(4, 5)).pow(2).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        updated.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    torch.testing.assert_close(updated[0], updated[1], rtol=1e-5, atol=1e-6)
