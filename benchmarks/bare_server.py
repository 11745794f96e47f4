"""The serving benchmark's baseline: the FastAPI app a user would write by hand around one model.

One uvicorn process, one worker, no Ray: validate the request with the same generated pydantic
models keel's ingress uses, run the same Predictor (features -> network -> post-processing)
inline on the event loop (a sub-millisecond model gains nothing from a thread hop), and answer
in keel's response shape. No batching, no prediction log, no metrics: that is keel's added work.
torch gets as many threads as a keel replica (`--torch-threads`), so both sides compute alike.

`running()` starts it as `python -m benchmarks.bare_server ...` and stops it afterwards.
"""

# No `from __future__ import annotations`: FastAPI reads the body model from the live annotation.

import argparse
import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import requests
import torch
import uvicorn
from fastapi import FastAPI
from omegaconf import OmegaConf

from keel.config.schema import PostprocessConfig
from keel.errors import KeelError
from keel.registry import Registry
from keel.serving.predictor import Predictor
from keel.serving.schema import instance_model, request_model


def create_app(
    registry: str, model: str, version: int, postprocess: dict[str, Any], max_rows: int
) -> FastAPI:
    """POST /v1/models/{model}:predict and GET /healthz, for one pinned registry version."""
    post = OmegaConf.to_object(
        OmegaConf.merge(OmegaConf.structured(PostprocessConfig), postprocess)
    )
    predictor = Predictor.load(Registry(registry), model, version, post)
    instance = instance_model(
        model, predictor.request_columns, set(predictor.features.input_columns)
    )
    body_model = request_model(model, instance, max_rows)
    app = FastAPI(title=f"bare {model}")

    # response_model=None: the dict is encoded as keel's ingress encodes it, not validated
    @app.post(f"/v1/models/{model}:predict", response_model=None)
    async def predict(body: body_model) -> dict[str, Any]:  # type: ignore[valid-type]
        rows = [i.model_dump() for i in body.instances]
        raw, outputs = predictor.predict_rows(rows)
        return {
            "model": model,
            "version": predictor.version.version,
            "predictions": [
                {"request_id": uuid.uuid4().hex, "prediction": r, "output": o}
                for r, o in zip(raw.tolist(), outputs, strict=True)
            ],
        }

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        return {"status": "ok"}

    return app


@contextmanager
def running(args: dict[str, Any], port: int, timeout_s: float = 120.0) -> Iterator[str]:
    """The server in its own process (its own GIL, like keel's replicas) until the block ends.

    `args` are main()'s options without dashes: registry, model, version, postprocess, ...
    """
    argv = [a for k, v in args.items() for a in (f"--{k.replace('_', '-')}", str(v))]
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.bare_server", *argv, "--port", str(port)]
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout_s
        while not _healthy(base):
            if proc.poll() is not None:
                raise KeelError(f"the bare server exited with {proc.returncode} (see its output)")
            if time.monotonic() > deadline:
                raise KeelError(f"the bare server at {base} did not answer in {timeout_s:.0f} s")
            time.sleep(0.25)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _healthy(base: str) -> bool:
    try:
        return requests.get(f"{base}/healthz", timeout=2).status_code == 200
    except requests.RequestException:
        return False


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--registry", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--version", type=int, required=True)
    p.add_argument("--postprocess", default="{}", help="serve.models.<model>.postprocess as JSON")
    p.add_argument("--max-rows", type=int, default=1000)
    p.add_argument("--torch-threads", type=int, default=1)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    a = p.parse_args(argv)
    torch.set_num_threads(a.torch_threads)
    app = create_app(a.registry, a.model, a.version, json.loads(a.postprocess), a.max_rows)
    uvicorn.run(app, host=a.host, port=a.port, workers=1, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
