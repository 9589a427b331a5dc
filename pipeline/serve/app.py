"""The FastAPI app: TEI-compatible ``POST /predict`` (and ``POST /``), /health, /info, /metrics, /docs, the demo page.

:func:`create_app` takes the classifier object (anything with ``logits``, ``token_counts``, ``decide``,
``id2label``, ``max_length``, ...), so tests inject a failing one. Every error answer has one shape,
``{"error": "...", "error_type": "..."}`` (TEI's), produced by the exception handlers below:

==========  ==============================================================================================
400         malformed JSON
413         body over --max-body-bytes, more texts than --max-inputs-per-request, a text over
            --max-input-chars, or over the model's max length with ``truncate: false``
415         Content-Type is not JSON
422         well-formed JSON of the wrong shape (missing/unknown fields, empty list, non-string items,
            empty texts, contradictory options)
429         more texts waiting than --max-queue (``overloaded``)
503         the forward pass of this request's batch failed (``backend``); the server keeps serving
==========  ==============================================================================================
"""

from __future__ import annotations

import logging
import platform
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi_offline import FastAPIOffline
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pipeline.data.clean import is_unicode_text
from pipeline.serve.batcher import BatchFailed, DynamicBatcher, NotRunning, Overloaded
from pipeline.serve.metrics import CONTENT_TYPE, RequestMetricsMiddleware, ServeMetrics
from pipeline.serve.schemas import INPUTS_HELP, ErrorResponse, Prediction, PredictRequest
from pipeline.serve.scoring import answers, label_set_answers, softmax
from pipeline.serve.settings import ServeSettings

log = logging.getLogger(__name__)
PAGE = Path(__file__).with_name("page.html")
PREDICT_FIELDS = "inputs, truncate, truncation_direction, raw_scores, parameters"
PARAMETER_FIELDS = "top_k, function_to_apply"


class RequestRefused(Exception):
    """A request the server will not answer as asked; ``status`` is a 4xx."""

    def __init__(self, status: int, message: str, error_type: str = "validation") -> None:
        super().__init__(message)
        self.status = status
        self.error_type = error_type


def version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


# ---------------------------------------------------------------------------------------------
# Request checks


async def require_json(request: Request) -> None:
    """415 unless the body is declared as JSON (FastAPI would otherwise report a confusing shape error)."""
    declared = request.headers.get("content-type", "")
    mime = declared.split(";")[0].strip().lower()
    if mime != "application/json" and not mime.endswith("+json"):
        raise RequestRefused(
            415,
            f"Content-Type is {declared!r}; send JSON with Content-Type: application/json"
            if declared
            else "Content-Type is missing; send JSON with Content-Type: application/json",
        )


def _name(index: int, single: bool) -> str:
    return "inputs" if single else f"inputs[{index}]"


def check_limits(texts: list[str], single: bool, settings: ServeSettings) -> None:
    if len(texts) > settings.max_inputs_per_request:
        raise RequestRefused(
            413,
            f"{len(texts)} inputs in one request, more than --max-inputs-per-request "
            f"{settings.max_inputs_per_request}; split the batch",
        )
    for i, text in enumerate(texts):
        if not text.strip():
            raise RequestRefused(422, f"{_name(i, single)} is empty or only whitespace; send the text to classify")
        if not is_unicode_text(text):  # else the tokenizer would fail the whole batch it lands in
            raise RequestRefused(422, f"{_name(i, single)} holds lone surrogate characters; send valid Unicode text")
        if len(text) > settings.max_input_chars:
            raise RequestRefused(
                413,
                f"{_name(i, single)} has {len(text)} characters, more than --max-input-chars "
                f"{settings.max_input_chars}; shorten it",
            )


def check_token_lengths(counts: list[int], max_length: int, single: bool) -> None:
    for i, count in enumerate(counts):
        if count > max_length:
            raise RequestRefused(
                413,
                f"{_name(i, single)} has {count} tokens, more than the model's max length {max_length}; "
                "omit truncate (or send truncate=true) to truncate it as in training",
            )


# ---------------------------------------------------------------------------------------------
# Errors: one JSON shape for all


def error_response(status: int, message: str, error_type: str) -> JSONResponse:
    return JSONResponse(ErrorResponse(error=message, error_type=error_type).model_dump(), status_code=status)


def _loc(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc[1:]] if loc and loc[0] == "body" else [str(p) for p in loc]
    return ".".join(parts)


def _validation_message(error: dict[str, Any]) -> tuple[int, str]:
    kind, loc = error.get("type", ""), tuple(error.get("loc", ()))
    if kind == "json_invalid":
        reason = (error.get("ctx") or {}).get("error", "invalid JSON")
        at = f" at character {loc[1]}" if len(loc) > 1 else ""
        return 400, f"malformed JSON{at}: {reason}; {INPUTS_HELP}"
    where = _loc(loc)
    if kind == "missing":
        if not where:
            return 422, f"the request body is empty; {INPUTS_HELP}"
        return 422, f"missing field {where}; {INPUTS_HELP}"
    if kind == "extra_forbidden":
        accepted = PARAMETER_FIELDS if where.startswith("parameters.") else PREDICT_FIELDS
        return 422, f"unknown field {where} (it would be ignored, changing nothing you expect); accepted: {accepted}"
    if kind in ("inputs", "truncation_direction", "raw_scores"):  # our own messages say it all
        return 422, str(error.get("msg"))
    if not where:
        return 422, f"the body must be a JSON object; {INPUTS_HELP}"
    return 422, f"{where}: {error.get('msg')}"


def body_too_large(limit: int) -> str:
    return f"request body is larger than --max-body-bytes {limit}; send fewer or shorter texts per request"


class BodyLimitMiddleware:
    """413 for a body over ``limit`` bytes: from Content-Length before reading, else while it streams in.

    (FastAPI's own ``max_body_size`` answers in plain text; this keeps the one JSON error shape.)
    """

    def __init__(self, app: ASGIApp, *, limit: int, refuse: Callable[[int, str, str], JSONResponse]) -> None:
        self.app = app
        self.limit = limit
        self.refuse = refuse

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await self.refuse(413, body_too_large(self.limit), "validation")(scope, receive, send)
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:  # FastAPI re-raises HTTPExceptions from body reading: the 413 handler answers
                raise StarletteHTTPException(413)
            return message

        await self.app(scope, counted, send)


def install_error_handlers(app: FastAPI, metrics: ServeMetrics) -> Callable[[int, str, str], JSONResponse]:
    """Register the handlers; returns the function that builds (and counts) an error answer."""

    def answer(status: int, message: str, error_type: str) -> JSONResponse:
        metrics.errors.labels(error_type, str(status)).inc()
        return error_response(status, " ".join(message.split()), error_type)

    @app.exception_handler(RequestRefused)
    async def refused(request: Request, exc: RequestRefused) -> JSONResponse:
        return answer(exc.status, str(exc), exc.error_type)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        found = [_validation_message(e) for e in exc.errors()]
        status = min(s for s, _ in found)  # a JSON syntax error (400) explains the rest
        messages = list(dict.fromkeys(m for s, m in found if s == status))
        return answer(status, "; ".join(messages[:3]), "validation")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 413:
            message = body_too_large(app.state.settings.max_body_bytes)
        elif exc.status_code == 404:
            message = f"no route {request.url.path}; see /docs for the API"
        elif exc.status_code == 405:
            message = f"{request.method} is not allowed on {request.url.path}; see /docs for the API"
        else:
            message = str(exc.detail)
        return answer(exc.status_code, message, "validation")

    @app.exception_handler(BatchFailed)
    async def batch_failed(request: Request, exc: BatchFailed) -> JSONResponse:
        return answer(503, f"the model failed on the batch holding this request ({exc}); retry", "backend")

    @app.exception_handler(Overloaded)
    async def overloaded(request: Request, exc: Overloaded) -> JSONResponse:
        return answer(429, f"model is overloaded: {exc}; retry later", "overloaded")

    @app.exception_handler(NotRunning)
    async def not_running(request: Request, exc: NotRunning) -> JSONResponse:
        return answer(503, f"{exc}; retry later", "unhealthy")

    @app.exception_handler(Exception)
    async def internal(request: Request, exc: Exception) -> JSONResponse:  # a bug: logged with its traceback
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return answer(500, f"internal server error ({type(exc).__name__}); see the server log", "internal")

    return answer


# ---------------------------------------------------------------------------------------------
# The app


def model_info(classifier: Any, settings: ServeSettings) -> dict[str, Any]:
    meta = classifier.metadata  # the folder's ModelMetadata
    id2label = {int(k): v for k, v in classifier.id2label.items()}
    positive = id2label.get(classifier.positive)
    threshold = classifier.threshold
    model_dir = Path(getattr(classifier, "model_dir", "model"))
    backend = getattr(classifier, "backend", None)  # a test's stand-in classifier may have none
    backend_name = getattr(backend, "name", "torch")
    return {
        "model_id": model_dir.name if model_dir.name != "model" else str(model_dir),
        "model_dir": str(model_dir),
        "model_dtype": getattr(backend, "dtype", None),
        "backend": backend_name,
        "model_type": {
            "classifier": {
                "id2label": {str(i): label for i, label in id2label.items()},
                "label2id": {label: i for i, label in id2label.items()},
            }
        },
        "mode": meta.mode,
        "base_model": meta.base_model,
        "labels": [id2label[i] for i in sorted(id2label)],
        "positive_label": positive,
        "threshold": threshold,
        "threshold_strategy": meta.threshold_strategy,
        "problem_type": meta.problem_type,
        "label_thresholds": meta.label_thresholds,
        "decision": "every label whose sigmoid score reaches its threshold (label_thresholds)"
        if meta.is_multi_label
        else (
            f"{positive} if p({positive}) >= {threshold:.4g}, else the other label"
            if threshold is not None and len(id2label) == 2
            else "the label with the highest probability"
        ),
        "max_input_length": classifier.max_length,
        "auto_truncate": True,
        "max_client_batch_size": settings.max_inputs_per_request,
        "max_batch_requests": settings.max_batch_size,
        "device": str(getattr(classifier, "device", "cpu")),
        "limits": {
            "max_batch_size": settings.max_batch_size,
            "max_wait_ms": settings.max_wait_ms,
            "max_input_chars": settings.max_input_chars,
            "max_inputs_per_request": settings.max_inputs_per_request,
            "max_body_bytes": settings.max_body_bytes,
            "max_queue": settings.max_queue,
        },
        "version": version("spam-tune"),
        "versions": {
            "python": platform.python_version(),
            **{name: version(name) for name in ("torch", "transformers", "peft", "fastapi", "uvicorn")},
            **({"onnxruntime": version("onnxruntime")} if backend_name == "onnxruntime" else {}),
        },
    }


def create_app(classifier: Any, settings: ServeSettings | None = None) -> FastAPI:
    """The server for ``classifier`` (a :class:`~pipeline.serve.classifier.Classifier` or a stand-in)."""
    settings = settings or ServeSettings()
    id2label = {int(k): v for k, v in classifier.id2label.items()}
    multi_label = bool(getattr(classifier, "multi_label", False))  # the tests' stand-in classifiers are single-label
    metrics = ServeMetrics(
        max_batch_size=settings.max_batch_size, queued=lambda: batcher.queued, in_flight=lambda: batcher.in_flight
    )
    batcher = DynamicBatcher(
        classifier.logits,
        max_batch_size=settings.max_batch_size,
        max_wait_s=settings.max_wait_ms / 1000,
        max_queue=settings.max_queue,
        on_batch=metrics.observe_batch,
    )
    info = model_info(classifier, settings)
    page = PAGE.read_text(encoding="utf-8")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await batcher.start()
        try:
            yield
        finally:
            await batcher.stop()

    app = FastAPIOffline(
        title="spam-tune classifier",
        version=info["version"] or "dev",
        description=(
            f"Classifies texts as {' / '.join(info['labels'])} with `{info['model_dir']}`. "
            "`POST /predict` speaks Hugging Face text-embeddings-inference's predict API; `POST /` is the same "
            "route (Hugging Face `InferenceClient(base_url=...).text_classification(text)` works). "
            "The demo page is at `/`."
        ),
        lifespan=lifespan,
        redoc_url=None,
    )
    app.state.settings = settings
    refuse = install_error_handlers(app, metrics)
    error_docs: dict[int | str, dict[str, Any]] = {
        code: {"model": ErrorResponse, "description": text}
        for code, text in {
            400: "Malformed JSON",
            413: "Body, batch or text too large",
            415: "Not JSON",
            422: "Wrong shape (e.g. empty inputs, non-string items, unknown fields)",
            429: "Overloaded",
            503: "The model failed on this batch",
        }.items()
    }

    async def predict(body: PredictRequest) -> JSONResponse:
        texts, single = body.texts(), isinstance(body.inputs, str)
        check_limits(texts, single, settings)
        if body.truncate is False:
            check_token_lengths(
                await batcher.run_in_worker(classifier.token_counts, texts), classifier.max_length, single
            )
        logits = await batcher.submit(texts)
        if multi_label:
            decisions = classifier.decide(classifier.to_probabilities(logits))
            rows = label_set_answers(
                logits, decisions, id2label, transform=body.transform("sigmoid"), top_k=body.top_k()
            )
        else:
            decisions = classifier.decide(softmax(logits.astype(np.float64)))
            rows = answers(logits, decisions, id2label, transform=body.transform(), top_k=body.top_k())
        return JSONResponse(rows if body.nested_answer() else rows[0])

    route = {
        "dependencies": [Depends(require_json)],
        "responses": {200: {"model": list[Prediction] | list[list[Prediction]]}, **error_docs},
        "response_class": JSONResponse,
    }
    app.post(
        "/predict",
        summary="Classify one text or a batch (TEI's /predict)",
        description=(
            '`{"inputs": "text"}` → `[{"label", "score"}, ...]` for that text; a batch, as a flat list of texts '
            '`{"inputs": ["t1", "t2"]}` or as TEI\'s `{"inputs": [["t1"], ["t2"]]}`, → one such list per text. '
            "The label the model decides (its saved threshold, see `/info`) comes first, then the others by "
            "score. With `parameters` (the Inference API form) the answer is always one list per input."
        ),
        **route,
    )(predict)
    app.post("/", summary="Same as POST /predict (TEI's and the Inference API's root route)", **route)(predict)

    @app.get("/", response_class=HTMLResponse, summary="Demo page: paste a message, see its label")
    async def demo_page() -> HTMLResponse:
        return HTMLResponse(page)

    @app.get("/health", summary="200 while the model worker runs", responses={503: {"model": ErrorResponse}})
    async def health() -> JSONResponse:
        if not batcher.running:
            raise NotRunning("the model worker is not running")
        return JSONResponse({"status": "ok"})

    @app.get("/info", summary="Model, labels, decision threshold, max length, limits and versions")
    async def get_info() -> JSONResponse:
        return JSONResponse(info)

    @app.get("/metrics", summary="Prometheus metrics", response_class=Response)
    async def get_metrics() -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    known = {getattr(r, "path", "") for r in app.routes}
    app.add_middleware(BodyLimitMiddleware, limit=settings.max_body_bytes, refuse=refuse)
    app.add_middleware(RequestMetricsMiddleware, metrics=metrics, paths=lambda: known)  # outermost: sees every answer
    return app
