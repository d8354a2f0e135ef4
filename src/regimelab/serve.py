"""``regimelab serve``: the regime of the latest bar over HTTP (FastAPI, run by uvicorn).

- ``POST /regime`` with ``{"bars": [{"timestamp", "open", "high", "low", "close",
  "volume"[, "symbol"]}, ...]}`` (recent bars, oldest first) returns the state
  of the last closed bar (by the server's clock), its filtered probabilities,
  the next-regime forecasts per horizon, the volatility forecasts per horizon (with
  a forecast-vol models folder) and the model version, one answer per symbol;
- ``GET /health``; ``GET /model`` (the manifest).

``regimelab serve --model F [--workers N]`` runs it; so does uvicorn itself, with
its own options, through the app factory::

    REGIMELAB_MODEL=models/hmm uvicorn --factory regimelab.serve:create_app --workers 4

where ``$REGIMELAB_MODEL`` names the model folder, ``$REGIMELAB_FORECAST_MODEL`` the
forecast stage's models folder (optional: the learned next-regime forecasts; without
it each answer has the chain's only), ``$REGIMELAB_VOL_MODEL`` the forecast-vol
stage's models folder (optional: each answer's ``volatility``, null without it),
``$REGIMELAB_STORE`` the prediction store (as for the CLI) and ``REGIMELAB_NO_STORE=1``
keeps none.

Bad input is a 422 (a body over the size limit a 413, a store that cannot be
written a 503), never a 500; every error, these and the 404, 405 and 500
that the framework answers, is :class:`~regimelab.serve_schema.ErrorAnswer`:
``{"detail": "<one line>"}``, plus ``errors`` (each problem's ``loc``, ``msg``
and ``type``) when the body is not JSON or does not match the request schema.
The OpenAPI page documents every answer and the request's field constraints
(:mod:`~regimelab.serve_schema`). Each answer is appended to the prediction
store. A request is cleaned and featurised with numpy
(:func:`~regimelab.data.validate.clean_series`,
:func:`~regimelab.inference.latest_series`): a 500-bar request takes a few
milliseconds where pandas' fixed costs took tens.
"""

from __future__ import annotations

import gc
import logging
import os
import sys
from pathlib import Path
from typing import Annotated, Any, NotRequired

import numpy as np
import pandas as pd
from fastapi import FastAPI, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import Field, TypeAdapter, ValidationError
from threadpoolctl import threadpool_limits
from typing_extensions import TypedDict  # pydantic needs this one before Python 3.12

from regimelab.data.readers import parse_text_timestamps, parse_timestamps
from regimelab.data.validate import NAT, SeriesBars, clean_series
from regimelab.exceptions import InputDataError, RegimelabError
from regimelab.forecast.apply import FORECAST_ENV, load_forecaster
from regimelab.forecast.vol_apply import VOL_ENV, load_vol_models
from regimelab.inference import latest_json, latest_series
from regimelab.models import load_model, model_version, read_manifest
from regimelab.serve_schema import (
    ANSWERS,
    DEFAULT_SYMBOL,
    MAX_BARS,
    MAX_BODY_BYTES,
    SERVER_ERROR,
    Health,
    ModelDescription,
    RegimeAnswer,
    RegimeAnswers,
    RegimeRequestDoc,
    documented,
    inline_refs,
)
from regimelab.store import ENV as STORE_ENV
from regimelab.store import PredictionStore, StoreError

log = logging.getLogger(__name__)

#: The environment variables the app factory reads (``create_app()`` without a folder).
MODEL_ENV = "REGIMELAB_MODEL"
NO_STORE_ENV = "REGIMELAB_NO_STORE"
# uvicorn's exit status for an application that cannot start: its worker supervisor
# then stops, where any other status has it start the worker again, and again.
_STARTUP_FAILURE = 3


class Bar(TypedDict):
    """One bar of a request: the bars contract's columns, ``symbol`` optional."""

    timestamp: str | int | float
    open: float
    high: float
    low: float
    close: float
    volume: float
    symbol: NotRequired[str]


class RegimeRequest(TypedDict):
    bars: Annotated[list[Bar], Field(min_length=1, max_length=MAX_BARS)]


# Typed dicts, not models: pydantic validates 500 bars into dicts in a third of the
# time it takes to build 500 model instances.
REQUEST = TypeAdapter(RegimeRequest)

def validation_detail(errors: list[dict[str, Any]]) -> str:
    """One line for pydantic's errors: the first one's place and message, and how many
    more there are."""
    first = errors[0]
    where = ".".join(str(part) for part in first["loc"])
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"request: {where + ': ' if where else ''}{first['msg']}{more}"


class BodyLimit:
    """ASGI middleware: a 413 once a request body passes ``max_bytes``, whether its
    length is declared (``Content-Length``) or it arrives in chunks."""

    def __init__(self, app: Any, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        detail = f"request body is over the limit of {self.max_bytes} bytes"
        length = dict(scope.get("headers") or []).get(b"content-length", b"")
        if length.isdigit() and int(length) > self.max_bytes:
            await JSONResponse(status_code=413, content={"detail": detail})(scope, receive, send)
            return
        seen = 0

        async def limited() -> dict[str, Any]:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    # An HTTPException: FastAPI passes it through its body parsing as is.
                    raise HTTPException(status_code=413, detail=detail)
            return message

        await self.app(scope, limited, send)


_EARLIEST, _LATEST = np.datetime64("1678-01-01", "s"), np.datetime64("2262-04-11", "s")


def _whole_seconds_utc(values: list[str | int | float]) -> np.ndarray | None:
    """``YYYY-MM-DDTHH:MM:SS`` strings in UTC (``Z``, ``+00:00`` or no zone), as numpy
    parses them in a tenth of pandas' time; None for anything else."""
    first = values[0]
    suffix = first[19:] if isinstance(first, str) else None
    if suffix is None or suffix not in ("Z", "+00:00", ""):
        return None
    size = 19 + len(suffix)
    texts = [v for v in values if isinstance(v, str) and len(v) == size and v.endswith(suffix)]
    if len(texts) < len(values):
        return None
    try:
        stamps = np.array([v[:19] for v in texts], dtype="datetime64[s]")
    except ValueError:
        return None
    # Out of nanosecond range is a bad timestamp, as in ingest.
    stamps[(stamps < _EARLIEST) | (stamps > _LATEST)] = np.datetime64("NaT")
    return stamps.astype("datetime64[ns]").view("int64")


def request_timestamps(values: list[str | int | float]) -> np.ndarray:
    """The request's timestamps as int64 nanoseconds (:data:`NAT` where one does not
    parse), read as ingest reads a file's column.

    Whole-second UTC strings, what exchanges and ``isoformat`` give, are parsed by
    numpy; other extended ISO-8601 strings (``2024-01-31T...``) go straight to the
    date parser; anything else takes ingest's whole path.
    """
    fast = _whole_seconds_utc(values)
    if fast is not None:
        return fast
    texts = [v for v in values if isinstance(v, str)]
    if len(texts) == len(values) and all(v[4:5] == "-" for v in texts):
        parsed = parse_text_timestamps([v.strip() for v in texts])
    else:
        parsed = parse_timestamps(pd.Series([str(v) for v in values], dtype=object))
    return parsed.to_numpy(dtype="datetime64[ns]").view("int64")


def request_series(bars: list[Bar], *, source: str = "request") -> list[SeriesBars]:
    """The request's bars, one clean series per symbol, cleaned as ingest cleans a file
    (invalid bars are dropped and counted; a repeated bar with other values is refused).

    Raises
    ------
    InputDataError
        If every bar is invalid, or a symbol's last one is: the answer is about the
        newest bar, so rather than answer silently for an older one, it says so.
    """
    ts = request_timestamps([b["timestamp"] for b in bars])
    values = np.array([(b["open"], b["high"], b["low"], b["close"], b["volume"]) for b in bars],
                      dtype="float64")
    symbols = [b.get("symbol", DEFAULT_SYMBOL) for b in bars]
    distinct = sorted(set(symbols))
    advice = "send more recent bars"
    if len(distinct) == 1:
        rows = {distinct[0]: np.arange(len(bars))}
    else:
        named = np.array(symbols, dtype=object)
        rows = {s: np.flatnonzero(named == s) for s in distinct}
    series = [clean_series(ts[idx], values[idx], symbol=s, source=source, advice=advice)
              for s, idx in rows.items()]
    if not any(len(s) for s in series):
        dropped = {k: sum(s.dropped[k] for s in series) for k in series[0].dropped}
        detail = ", ".join(f"{k} {v}" for k, v in dropped.items() if v)
        raise InputDataError(f"{source}: all {len(bars)} rows are invalid ({detail})")
    for s in series:
        last = rows[s.symbol][-1]
        if ts[last] == NAT or ts[last] not in s.timestamp:
            which = "the last bar" if len(series) == 1 else f"the last {s.symbol} bar"
            raise InputDataError(
                f"{source}: {which} ({bars[last]['timestamp']}) is invalid (a bad timestamp, or "
                "prices that are missing, non-positive or outside high-low); send it "
                "corrected or without it")
    return [s for s in series if len(s)]


def create_app(model_folder: str | Path | None = None, *,
               store: PredictionStore | None = None,
               max_body_bytes: int = MAX_BODY_BYTES,
               forecast_model: str | Path | None = None,
               vol_model: str | Path | None = None) -> FastAPI:
    """The application for one model folder, loaded once.

    Parameters
    ----------
    model_folder : path, optional
        None is the app factory of ``uvicorn --factory regimelab.serve:create_app``:
        the folder is ``$REGIMELAB_MODEL``, the store ``$REGIMELAB_STORE`` (None with
        ``REGIMELAB_NO_STORE=1``); a mistake there ends the process with one
        ``error:`` line and uvicorn's start-up failure status (3), so that its worker
        supervisor stops rather than restarts the workers.
    store : PredictionStore, optional
        Where answers are appended; None keeps none.
    max_body_bytes : int
        Larger request bodies get a 413 before they are parsed.
    forecast_model : path, optional
        The forecast stage's models folder: its learned forecasts join the chain's in
        every answer (:func:`~regimelab.forecast.apply.load_forecaster`).
    vol_model : path, optional
        The forecast-vol stage's models folder, fitted on this model's regimes: every
        answer's ``volatility`` (:func:`~regimelab.forecast.vol_apply.load_vol_models`).
    """
    if model_folder is None:
        return _app_from_environment(max_body_bytes)
    folder = str(model_folder)
    manifest = read_manifest(folder)
    model = load_model(folder)
    version = model_version(folder)
    forecaster = (None if forecast_model is None
                  else load_forecaster(forecast_model, model_version=version))
    vol = None if vol_model is None else load_vol_models(vol_model, model_version=version)
    # The first pass compiles or loads the DSSM's compiled loop: before the first request.
    model.filter_proba(np.zeros((2, len(manifest["features"]))), np.array([2]))
    app = FastAPI(title="regimelab", version=manifest["regimelab_version"],
                  responses={500: SERVER_ERROR})
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)

    # The router's own errors, with a detail that says what was expected (its own
    # say "Not Found"). The 413 raised while a body arrives is FastAPI's default
    # answer to an HTTPException, already the error shape.
    @app.exception_handler(404)
    async def no_such_path(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse(status_code=404, content={
            "detail": f"{request.url.path}: no such path; expected /regime, /health, "
                      "/model, /docs or /openapi.json"})

    @app.exception_handler(405)
    async def wrong_method(request: Request, exc: Exception) -> JSONResponse:
        allowed = getattr(exc, "headers", None) or {}
        return JSONResponse(status_code=405, headers=allowed, content={
            "detail": f"{request.method} {request.url.path}: method not allowed; expected "
                      f"{allowed.get('Allow', 'another method')}"})

    # A bug in regimelab: the traceback goes to the server's log (uvicorn logs what
    # Starlette re-raises), the client gets the error shape rather than plain text.
    @app.exception_handler(Exception)
    async def server_error(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse(status_code=500, content={
            "detail": f"internal error ({type(exc).__name__}); see the server's log"})

    @app.exception_handler(StoreError)
    async def store_error(request: Request, exc: StoreError) -> JSONResponse:
        return JSONResponse(status_code=503, content={"detail": str(exc)})

    @app.exception_handler(RegimelabError)
    async def user_error(request: Request, exc: RegimelabError) -> JSONResponse:
        return JSONResponse(status_code=422, content={"detail": str(exc)})

    @app.exception_handler(RequestValidationError)
    async def malformed(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"loc": [p if isinstance(p, int) else str(p) for p in e["loc"]],
                   "msg": str(e["msg"]), "type": str(e["type"])} for e in exc.errors()]
        return JSONResponse(status_code=422, content={"detail": validation_detail(errors),
                                                      "errors": errors})

    @app.get("/health", response_model=documented(Health),
             summary="The service is up, and its model")
    def health() -> dict[str, Any]:
        return {"status": "ok", "model": manifest["model"], "n_states": model.n_states,
                "model_version": version}

    @app.get("/model", response_model=documented(ModelDescription),
             summary="The model's manifest and version")
    def describe() -> dict[str, Any]:
        return {**manifest, "model_version": version}

    # The body is parsed and validated in one pass by pydantic's JSON parser, about
    # three times faster than FastAPI's json.loads then validation; the OpenAPI page
    # shows serve_schema's documentation of it. The handler runs on the event loop: the
    # work is a few milliseconds of CPU, for which a thread pool adds only a hand-off.
    # The store is written in a worker thread: a remote database's round trip must
    # not hold up the loop.
    @app.post("/regime", response_model=documented(RegimeAnswer | RegimeAnswers),
              responses=ANSWERS,
              summary="The regime of the last closed bar of each symbol",
              openapi_extra={"requestBody": {"required": True, "content": {
                  "application/json": {"schema": inline_refs(
                      RegimeRequestDoc.model_json_schema())}}}})
    async def regime(request: Request) -> dict[str, Any]:
        try:
            body = REQUEST.validate_json(await request.body())
        except ValidationError as exc:
            # Without the input: bytes that are not UTF-8 could not be sent back as JSON.
            raise RequestValidationError(exc.errors(include_url=False, include_input=False)
                                         ) from None
        now = pd.Timestamp.now(tz="UTC")
        rows = [latest_series(model, manifest, s.symbol, s.timestamp, s.columns,
                              lookback=MAX_BARS, as_of=now, source="request",
                              forecaster=forecaster, vol=vol)
                for s in request_series(body["bars"])]
        if store is not None:
            await run_in_threadpool(store.append, rows, source="serve", model=folder,
                                    version=version)
        k = model.n_states
        answers = [latest_json(r, k) for r in rows]
        return {"model_version": version, "model": manifest["model"],
                "n_states": k, **(answers[0] if len(answers) == 1 else {"symbols": answers})}

    return app


def _settle() -> None:
    """What a server process does once its application is loaded."""
    # What is loaded now lives as long as the server: out of the collector's way, a
    # full collection no longer walks torch's and pandas' objects during a request.
    gc.collect()
    gc.freeze()


def _app_from_environment(max_body_bytes: int) -> FastAPI:
    """``uvicorn --factory``'s application: see :func:`create_app`."""
    try:
        folder = os.environ.get(MODEL_ENV, "")
        if not folder:
            raise InputDataError(f"${MODEL_ENV} is not set; set it to a model folder "
                                 "(models/hmm, models/dssm, ...) to serve")
        keep_none = os.environ.get(NO_STORE_ENV, "") not in ("", "0")
        app = create_app(folder, store=None if keep_none else PredictionStore(),
                         max_body_bytes=max_body_bytes,
                         forecast_model=os.environ.get(FORECAST_ENV) or None,
                         vol_model=os.environ.get(VOL_ENV) or None)
    except RegimelabError as exc:
        sys.stderr.write(f"error: {exc}\n")
        raise SystemExit(_STARTUP_FAILURE) from None
    # The process is the server's: as in serve(), BLAS keeps to one thread for good.
    threadpool_limits(1)
    _settle()
    log.info("serving %s (process %d)", folder, os.getpid())
    return app


def serve(model_folder: str | Path, *, host: str = "127.0.0.1", port: int = 8080,
          store: PredictionStore | None = None, workers: int = 1,
          log_level: int = logging.INFO, access_log: bool = True,
          forecast_model: str | Path | None = None,
          vol_model: str | Path | None = None) -> None:
    """Run the application with uvicorn until interrupted (loopback unless told).

    Parameters
    ----------
    workers : int
        Server processes on one socket. With more than one, each loads the model
        through the app factory, told the folder and the store by this process's
        environment (``$REGIMELAB_MODEL``, ``$REGIMELAB_STORE``, ``$REGIMELAB_NO_STORE``).
    forecast_model : path, optional
        The forecast stage's models folder (``$REGIMELAB_FORECAST_MODEL`` for workers).
    vol_model : path, optional
        The forecast-vol stage's models folder (``$REGIMELAB_VOL_MODEL`` for workers).
    log_level : int
        uvicorn's: INFO shows its start-up lines and, with ``access_log``, one line
        per request.
    """
    import uvicorn

    options: dict[str, Any] = {"host": host, "port": port, "access_log": access_log,
                               "log_level": logging.getLevelName(log_level).lower()}
    if workers > 1:
        read_manifest(model_folder)  # a wrong folder is one error here, not one per worker
        if vol_model is not None:
            load_vol_models(vol_model, model_version=model_version(model_folder))
        os.environ[MODEL_ENV] = str(Path(model_folder).resolve())
        if forecast_model is None:
            os.environ.pop(FORECAST_ENV, None)
        else:
            os.environ[FORECAST_ENV] = str(Path(forecast_model).resolve())
        if vol_model is None:
            os.environ.pop(VOL_ENV, None)
        else:
            os.environ[VOL_ENV] = str(Path(vol_model).resolve())
        if store is None:
            os.environ[NO_STORE_ENV] = "1"
        else:
            os.environ[STORE_ENV] = store.url
            os.environ.pop(NO_STORE_ENV, None)
        log.info("serving %s on http://%s:%d with %d workers", model_folder, host, port,
                 workers)
        uvicorn.run("regimelab.serve:create_app", factory=True, workers=workers, **options)
        return
    app = create_app(model_folder, store=store, forecast_model=forecast_model,
                     vol_model=vol_model)
    _settle()
    log.info("serving %s on http://%s:%d", model_folder, host, port)
    # A request's matrices are a few hundred rows: BLAS threads would only spin and
    # take the cores from the event loop (and from other processes).
    with threadpool_limits(1):
        uvicorn.run(app, **options)
