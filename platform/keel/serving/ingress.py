"""The HTTP front of the Serve application: the versioned API in README.md, "Serving".

Hops on the request path: the Serve proxy (HTTP termination and routing, unavoidable) and this
ingress (auth, limits, validation, request ids, the prediction and request logs: one place for
every model so the logs and the API contract do not depend on which model runs). With
`serve.fused` (the default) the models run inside this replica: that is all. Otherwise one more
hop, a handle call to the model's own deployment, buys each model its own batching,
autoscaling and GPU placement.
"""

from __future__ import annotations

import asyncio
import hmac
import inspect
import json
import logging
import os
import time
import uuid
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError
from ray import serve
from ray.serve.handle import DeploymentHandle

from keel import prediction_log as plog
from keel.config.schema import ColumnSpec

from .api import Rejected, build_api
from .metrics import ServeMetrics
from .model_server import ModelRunner
from .schema import Feedback, FeedbackRequest, errors, instance_model, request_model
from .settings import ServeSettings
from .spool import ParquetLog, SpoolError, default_spool

if TYPE_CHECKING:
    import pyarrow as pa

log = logging.getLogger(__name__)

OPEN_PATHS = {"/healthz", "/readyz", "/openapi.json", "/docs", "/docs/oauth2-redirect"}


def _too_large(limit: int) -> Rejected:
    return Rejected(413, "too_large", f"request body over {limit} bytes")


@serve.deployment(name="Ingress")
@serve.ingress()
class Ingress:
    async def __init__(self, servers: dict[str, DeploymentHandle], settings: ServeSettings) -> None:
        self.settings = settings
        self.servers: dict[str, DeploymentHandle | ModelRunner] = servers or {
            model: ModelRunner(runner) for model, runner in settings.runners.items()
        }
        logs = settings.logs
        self.requests, self.logs, self.request_logs, self.explanation_logs = {}, {}, {}, {}
        for model in self.servers:
            contract = await self._call(model, "contract")
            columns = {c: ColumnSpec(**s) for c, s in contract["columns"].items()}
            instance = instance_model(model, columns, set(contract["required"]))
            self.requests[model] = request_model(model, instance, settings.max_rows_per_request)
            self.logs[model] = self._buffer(
                plog.predictions_dir(logs, model), plog.prediction_schema(columns)
            )
            self.request_logs[model] = self._buffer(
                plog.requests_dir(logs, model), plog.REQUEST_SCHEMA
            )
            self.explanation_logs[model] = self._buffer(
                plog.explanations_dir(logs, model), plog.EXPLANATION_SCHEMA
            )
        self.feedback = self._buffer(plog.feedback_dir(logs), plog.FEEDBACK_SCHEMA)
        for buffer in self._all_logs():  # rows a killed replica spooled on this machine
            buffer.adopt()
        self.token = _token(settings.auth_token_env)
        self.metrics = ServeMetrics()
        self._flusher = asyncio.get_running_loop().create_task(self._flush_when_due())

    async def _call(self, model: str, method: str, *args: Any) -> Any:
        """A model's method: in this process (fused) or on its deployment (one handle hop)."""
        target = self.servers[model]
        if isinstance(target, DeploymentHandle):
            return await getattr(target, method).remote(*args)
        result = getattr(target, method)(*args)
        return await result if inspect.isawaitable(result) else result

    # ------------------------------------------------------------------ the logs

    def _buffer(self, directory: str, schema: pa.Schema) -> ParquetLog:
        flush = self.settings.log
        return ParquetLog(
            directory,
            schema,
            flush.flush_rows,
            flush.flush_seconds,
            flush.spool or default_spool(),
        )

    def _all_logs(self) -> list[ParquetLog]:
        return [
            *self.logs.values(),
            *self.request_logs.values(),
            *self.explanation_logs.values(),
            self.feedback,
        ]

    async def _flush_when_due(self) -> None:
        while True:
            await asyncio.sleep(0.5)
            for buffer in self._all_logs():
                if buffer.due():
                    try:
                        await asyncio.to_thread(buffer.flush)
                    except Exception as e:  # rows stay spooled for the next try
                        log.warning(
                            "writing %d rows to %s failed (%s): spooled, retry %d in %.1f s",
                            buffer.pending,
                            buffer.directory,
                            e,
                            buffer.failures,
                            buffer.retry_in(),
                        )

    async def __del__(self) -> None:
        """Serve's graceful shutdown: write whatever is still spooled."""
        self._flusher.cancel()
        for runner in self.servers.values():
            if isinstance(runner, ModelRunner):  # fused: the models' registry watchers
                runner.stop()
        for buffer in self._all_logs():
            try:
                buffer.flush()
            except Exception:  # the other logs are still written
                log.exception("flushing %s at shutdown failed", buffer.directory)

    # ------------------------------------------------------------------ requests

    async def _body(self, request: Request) -> Any:
        limit = self.settings.max_body_bytes
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit:
            raise _too_large(limit)
        body = bytearray()
        async for chunk in request.stream():  # a chunked body declares no length: count it
            body += chunk
            if len(body) > limit:
                raise _too_large(limit)
        try:
            value = json.loads(body)
        except RecursionError:  # nested past Python's own limit
            raise _too_deep() from None
        except (ValueError, UnicodeDecodeError) as e:
            raise Rejected(400, "malformed", f"body is not valid JSON: {e}") from None
        if _depth(value) > MAX_DEPTH:
            raise _too_deep()
        return value

    def _authorize(self, request: Request) -> None:
        if self.token is None or request.url.path in OPEN_PATHS:
            return
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.encode(), self.token):
            raise Rejected(401, "unauthorized", "missing or wrong bearer token")

    async def predict(self, model: str, request: Request, explain: bool = False) -> JSONResponse:
        """One request-log row per answer, refusals and crashes included: what SLOs count.
        An unknown model has no log to write to. `explain` (the :explain route, or
        "explain": true in the body) adds an explanation to each prediction."""
        started = time.perf_counter()
        if model not in self.servers:
            served = ", ".join(sorted(self.servers))
            raise Rejected(404, "unknown_model", f"no model {model!r} is served (served: {served})")
        # a refusal is logged as the route's operation; an answer as what the body asked for
        route = plog.Operation.explain if explain else plog.Operation.predict
        try:
            response, rows, operation = await self._predict(model, request, started, explain)
        except Rejected as e:
            self.log_request(model, e.status, e.reason, e.rows, started, route)
            raise
        except Exception:
            self.log_request(model, 500, "internal", 0, started, route)
            raise
        self.log_request(model, 200, None, rows, started, operation)
        return response

    async def _predict(
        self, model: str, request: Request, started: float, explain: bool
    ) -> tuple[JSONResponse, int, plog.Operation]:
        body = await self._body(request)
        try:
            parsed = self.requests[model].model_validate(body)
        except ValidationError as e:
            raise Rejected(422, "invalid", errors(e), rows=_instances(body)) from None
        rows = [i.model_dump() for i in parsed.instances]
        explain = explain or parsed.explain
        result = await self._call(model, "explain" if explain else "predict", rows)
        if "refused" in result:
            raise Rejected(409, "not_explainable", result["refused"], rows=len(rows))
        latency_ms = (time.perf_counter() - started) * 1000
        ids = [uuid.uuid4().hex for _ in rows]
        answers = [
            {"request_id": i, "prediction": raw, "output": out}
            for i, raw, out in zip(ids, result["raw"], result["outputs"], strict=True)
        ]
        for answer, why in zip(answers, result.get("explanations") or (), strict=False):
            answer["explanation"] = why
        # rendered before anything is logged: an answer that cannot be sent is not logged served
        response = JSONResponse(
            {"model": model, "version": result["version"], "predictions": answers}
        )
        try:  # the served rows first: when the spool is full, nothing of the answer is logged
            self._log(model, rows, ids, result, latency_ms)
            if explain:
                self._log_explanations(model, ids, result)
            if result.get("shadow"):
                self._log(model, rows, ids, result["shadow"], latency_ms)
        except SpoolError as e:
            raise _unlogged(e, len(rows)) from None
        self.metrics.served(model, result["version"], result["variant"], len(rows), latency_ms)
        return response, len(rows), plog.Operation.explain if explain else plog.Operation.predict

    def log_request(
        self,
        model: str,
        status: int,
        reason: str | None,
        rows: int,
        started: float,
        operation: plog.Operation,
    ) -> None:
        """The request log row of a predict or explain request to a served model (others are
        not logged)."""
        if (buffer := self.request_logs.get(model)) is None:
            return
        latency_ms = (time.perf_counter() - started) * 1000
        row = {"model": model, "status": status, "reason": reason, "rows": rows}
        try:
            buffer.append(
                [{"ts": plog.now(), **row, "latency_ms": latency_ms, "operation": operation.value}]
            )
        except SpoolError:
            # the answer stands (a 200's rows are in the prediction log); while the spool is
            # full the request log misses it, and the keel_rejected metric still counts 503s
            self.metrics.not_logged(model)

    def _log(self, model: str, rows, ids, result: dict, latency_ms: float) -> None:
        ts = plog.now()
        fixed = {
            "ts": ts,
            "model": model,
            "version": result["version"],
            "variant": result["variant"],
            "latency_ms": latency_ms,
        }
        logged = zip(
            ids, rows, result["score"], result["probabilities"], result["outputs"], strict=True
        )
        self.logs[model].append(
            [
                plog.prediction_row(
                    {
                        **fixed,
                        "request_id": i,
                        "prediction": s,
                        plog.PROBABILITIES: p,
                        "output": json.dumps(o),
                    },
                    row,
                )
                for i, row, s, p, o in logged
            ]
        )

    def _log_explanations(self, model: str, ids: list[str], result: dict) -> None:
        ts, version = plog.now(), result["version"]
        self.explanation_logs[model].append(
            [
                {
                    "request_id": i,
                    "ts": ts,
                    "model": model,
                    "version": version,
                    "explained": why["explained"],
                    "base": why["base"],
                    "output": why["output"],
                    "attributions": json.dumps(why["attributions"]),
                }
                for i, why in zip(ids, result["explanations"], strict=True)
            ]
        )

    async def record_feedback(self, request: Request) -> dict[str, Any]:
        body = await self._body(request)
        try:
            if isinstance(body, dict) and "feedback" in body:
                items = FeedbackRequest.model_validate(body).feedback
            else:
                items = [Feedback.model_validate(body)]
        except ValidationError as e:
            raise Rejected(422, "invalid", errors(e)) from None
        ts = plog.now()
        try:
            self.feedback.append(
                [
                    {"request_id": f.request_id, "ts": ts, "label": json.dumps(f.label)}
                    for f in items
                ]
            )
        except SpoolError as e:
            raise _unlogged(e, 0) from None
        return {"accepted": len(items)}

    async def list_models(self) -> dict[str, Any]:
        infos = await asyncio.gather(*(self._call(m, "info") for m in self.servers))
        return {"models": infos}

    async def ready(self) -> JSONResponse:
        try:
            states = await asyncio.wait_for(
                asyncio.gather(*(self._call(m, "ready") for m in self.servers)), 10
            )
        except Exception as e:
            return JSONResponse({"ready": False, "error": str(e)}, status_code=503)
        ok = all(states)
        body = {"ready": ok, "settings": self.settings.fingerprint}
        return JSONResponse(body, status_code=200 if ok else 503)

    # ------------------------------------------------------------------ the app

    def __serve_build_asgi_app__(self) -> FastAPI:
        return build_api(self)

    def reject(self, model: str | None, error: Rejected) -> JSONResponse:
        # a client's model name is never a metric tag: any string of any length would make a
        # series (and Ray's tags take ASCII only: a 500 for /v1/models/café:predict)
        self.metrics.rejected(model if model in self.servers else "-", error.reason)
        return JSONResponse(
            {"error": error.reason, "detail": error.message}, status_code=error.status
        )

    def openapi(self, app: FastAPI) -> dict:
        """FastAPI's document plus the request bodies the routes validate themselves: each
        model's generated request schema, and feedback (one label or a list of them)."""
        doc = get_openapi(title=app.title, version=app.version, routes=app.routes)
        components = doc.setdefault("components", {}).setdefault("schemas", {})

        def body(path: str, *models: type[BaseModel]) -> None:
            refs = []
            for m in models:
                schema = m.model_json_schema(ref_template="#/components/schemas/{model}")
                components.update(schema.pop("$defs", {}))
                components[m.__name__] = schema
                refs.append({"$ref": f"#/components/schemas/{m.__name__}"})
            content = {"schema": refs[0] if len(refs) == 1 else {"anyOf": refs}}
            op = doc["paths"][path]["post"]
            op["requestBody"] = {"required": True, "content": {"application/json": content}}

        for model, req in self.requests.items():
            body(f"/v1/models/{model}:predict", req)
            body(f"/v1/models/{model}:explain", req)
        body("/v1/feedback", Feedback, FeedbackRequest)
        return doc


# How deeply a body's JSON may nest: a predict or feedback body nests 4 deep; anything far
# deeper is a mistake or an attack, and deep enough documents overflow recursive code (the JSON
# parser, pydantic, repr in error messages).
MAX_DEPTH = 32


def _unlogged(error: SpoolError, rows: int) -> Rejected:
    """What was not logged was not served: a 503 the client can retry, never a 200 lost."""
    return Rejected(503, "log_unavailable", f"{error}; nothing was accepted, retry later", rows)


def _too_deep() -> Rejected:
    return Rejected(400, "malformed", f"body is nested deeper than {MAX_DEPTH} levels")


def _depth(value: Any) -> int:
    """How deeply a parsed JSON document nests (a scalar: 0), without recursion; counting
    stops past MAX_DEPTH."""
    deepest, stack = 0, [(value, 1)]
    while stack and deepest <= MAX_DEPTH:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, depth)
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
    return deepest


def _instances(body: Any) -> int:
    """How many instances a refused body holds, when it holds a list of them."""
    instances = body.get("instances") if isinstance(body, dict) else None
    return len(instances) if isinstance(instances, list) else 0


def _token(env: str | None) -> bytes | None:
    if not env:
        return None
    value = os.environ.get(env)
    if not value:
        raise RuntimeError(
            f"serve.auth_token_env is {env!r} but that environment variable is empty on the "
            "ingress replica: set it (keel serve forwards it from your shell)"
        )
    return value.encode()
