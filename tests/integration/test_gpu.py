"""The GPU path: train.use_gpu=auto trains on GPUs with bf16 autocast; replicas predict there.

Where the machine has no CUDA GPU the GPU tests skip with that reason, and the CPU half of
the same rule is checked: auto means CPU, and no autocast.
"""

from __future__ import annotations

from contextlib import nullcontext

import numpy as np
import pandas as pd
import pytest
import ray
import torch

from keel.registry import Registry
from keel.serving.predictor import Predictor
from keel.training.loop import autocast
from keel.training.run import train
from keel.training.trainer import use_gpu

GPU = torch.cuda.is_available()
needs_gpu = pytest.mark.skipif(
    not GPU, reason="no CUDA GPU on this machine: the GPU path runs where Ray sees a GPU"
)
TINY = ("dataset.source.rows=3000", "train.epochs=2", "train.cpus_per_worker=0.5")


def test_auto_follows_the_cluster_and_cpu_runs_full_precision(ray_session):
    assert use_gpu("auto") == (ray.cluster_resources().get("GPU", 0) > 0)
    assert use_gpu("false") is False and use_gpu("true") is True
    for precision in ("auto", "bf16", "fp32"):
        assert isinstance(autocast(torch.device("cpu"), precision), nullcontext)


@needs_gpu
def test_autocast_runs_bf16_on_the_gpu_unless_fp32():
    layer = torch.nn.Linear(8, 4).cuda()
    x = torch.randn(16, 8, device="cuda")
    with autocast(torch.device("cuda"), "auto"):
        assert layer(x).dtype == torch.bfloat16
    with autocast(torch.device("cuda"), "fp32"):
        assert layer(x).dtype == torch.float32


@needs_gpu
def test_training_on_the_gpu_learns_and_serving_predicts_there_as_on_cpu(make_cfg, ray_session):
    assert ray.cluster_resources().get("GPU", 0) >= 1, "Ray started without the GPU"
    cfg = make_cfg(*TINY, "train.use_gpu=auto", "slo.quality_floor.roc_auc=0")
    out = train(cfg)
    assert out.metrics["test"]["roc_auc"] > out.metrics["baseline"]["roc_auc"] + 0.1
    registry = Registry(cfg.paths.registry)
    on_gpu = Predictor.load(registry, "churn", out.version.version)
    on_cpu = Predictor.load(registry, "churn", out.version.version, device="cpu")
    assert next(on_gpu.model.parameters()).is_cuda
    rows = pd.read_parquet(f"{out.version.path}/reference.parquet").head(64).to_dict("records")
    np.testing.assert_allclose(
        on_gpu.predict_rows(rows)[0], on_cpu.predict_rows(rows)[0], atol=1e-4
    )
