"""The FastAPI routes of the ingress, built on the replica once it knows the served models.

Every model gets its own predict route (so the OpenAPI document carries its request schema); a
templated route catches unknown model names with a 404 that lists the served ones. A refused
token on a served model's predict route gets its request-log row here, before any route runs.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterable
from typing import Any, Protocol

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from keel.prediction_log import Operation

log = logging.getLogger(__name__)


class Rejected(Exception):
    """A refused request: its HTTP status, the reason logged and counted, the message shown."""

    def __init__(self, status: int, reason: str, message: str | list[str], rows: int = 0):
        self.status, self.reason, self.rows = status, reason, rows  # rows: instances refused
        self.message = message if isinstance(message, list) else [message]


class Ingress(Protocol):
    """What the routes need of the ingress deployment (serving/ingress.py implements it; this
    module does not import it, the ingress builds its app from here)."""

    token: str | None
    servers: Iterable[str]  # the served models' names

    def _authorize(self, request: Request) -> None: ...
    async def predict(
        self, model: str, request: Request, explain: bool = False
    ) -> JSONResponse: ...
    async def record_feedback(self, request: Request) -> dict[str, Any]: ...
    async def list_models(self) -> dict[str, Any]: ...
    async def ready(self) -> JSONResponse: ...
    def reject(self, model: str | None, error: Rejected) -> JSONResponse: ...
    def openapi(self, app: FastAPI) -> dict: ...
    def log_request(
        self,
        model: str,
        status: int,
        reason: str | None,
        rows: int,
        started: float,
        operation: Operation,
    ) -> None: ...


PREDICT_PATH = re.compile(r"/v1/models/([^/]+):(predict|explain)")  # model, Operation
# malformed, no token, too large, invalid; the log's spool full (nothing accepted, retry)
REFUSALS = {400: {}, 401: {}, 413: {}, 422: {}, 503: {}}
EXPLAIN_REFUSALS = {**REFUSALS, 409: {}}  # 409: a version trained before explanations
OPERATIONS = {  # each model's routes: summary, the refusals documented
    Operation.predict: ("Predict with {model}", REFUSALS),
    Operation.explain: (
        "Predict with {model} and say why: an attribution per input column",
        EXPLAIN_REFUSALS,
    ),
}


class Guard:
    """The bearer token, checked before any route, as plain ASGI: starlette's
    @app.middleware("http") runs every response through a task group and a memory stream, a
    cost each request paid even with no token configured."""

    def __init__(self, app: Any, ingress: Ingress) -> None:
        self.app, self.ingress = app, ingress

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or self.ingress.token is None:
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        request = Request(scope)
        try:
            self.ingress._authorize(request)
        except Rejected as e:
            if predict := PREDICT_PATH.fullmatch(request.url.path):
                operation = Operation(predict[2])
                self.ingress.log_request(predict[1], e.status, e.reason, 0, started, operation)
            return await self.ingress.reject(None, e)(scope, receive, send)
        await self.app(scope, receive, send)


def build_api(ingress: Ingress) -> FastAPI:
    app = FastAPI(
        title="keel",
        version="1",
        description="Predictions, feedback and model listings for the models keel serves.",
    )

    app.add_middleware(Guard, ingress=ingress)

    @app.exception_handler(Rejected)
    async def rejected(request: Request, e: Rejected):
        model = request.path_params.get("model") or request.url.path.split("/")[-1].split(":")[0]
        return ingress.reject(model, e)

    def route(model: str, operation: Operation):
        async def answer(request: Request):
            return await ingress.predict(model, request, operation is Operation.explain)

        answer.__name__ = f"{operation.value}_{model}"
        return answer

    def unknown(operation: Operation):
        async def answer(model: str, request: Request):  # a 404 naming the served models
            return await ingress.predict(model, request, operation is Operation.explain)

        answer.__name__ = f"{operation.value}_unknown"
        return answer

    for model in ingress.servers:
        for operation, (summary, refusals) in OPERATIONS.items():
            app.post(
                f"/v1/models/{model}:{operation.value}",
                summary=summary.format(model=model),
                tags=[operation.value],
                responses=refusals,
            )(route(model, operation))
    for operation in OPERATIONS:
        path = f"/v1/models/{{model}}:{operation.value}"
        app.post(path, include_in_schema=False)(unknown(operation))

    @app.post(
        "/v1/feedback",
        tags=["feedback"],
        summary="Ground-truth labels for request ids",
        responses=REFUSALS,
    )
    async def feedback(request: Request):
        return await ingress.record_feedback(request)

    @app.get(
        "/v1/models", tags=["models"], summary="What is served, by version", responses={401: {}}
    )
    async def models():
        return await ingress.list_models()

    @app.get("/healthz", tags=["health"])
    async def healthz():
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"], responses={503: {}})
    async def readyz():
        return await ingress.ready()

    @app.exception_handler(Exception)
    async def crashed(request: Request, e: Exception):
        log.exception("unhandled error on %s", request.url.path)
        return JSONResponse({"error": "internal", "detail": [str(e)]}, status_code=500)

    schema: dict = {}
    app.openapi = lambda: schema or schema.update(ingress.openapi(app)) or schema
    return app
