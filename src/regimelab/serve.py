"""``regimelab serve``: the regime of the latest bar over HTTP (FastAPI, run by uvicorn).

- ``POST /regime`` with ``{"bars": [{"timestamp", "open", "high", "low", "close",
  "volume"[, "symbol"]}, ...]}`` (recent bars, oldest first) returns the state
  of the last bar, its filtered probabilities and the model version;
- ``GET /health``; ``GET /model`` (the manifest).

Bad input is a 422 with a message (a body over the size limit a 413), never a
500. Each answer is appended to the prediction store.
"""

from __future__ import annotations

import gc
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, ValidationError

from regimelab.data.readers import parse_text_timestamps, parse_timestamps
from regimelab.data.validate import NAT, SeriesBars, clean_series
from regimelab.exceptions import InputDataError, RegimelabError
from regimelab.inference import latest_series
from regimelab.models import load_model, model_version, read_manifest
from regimelab.store import PredictionStore, StoreError

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 2_000_000  # about 10,000 bars of JSON
MAX_BARS = 10_000


class Bar(BaseModel):
    timestamp: str | int | float
    open: float
    high: float
    low: float
    close: float
    volume: float
    symbol: str = "INPUT"


class RegimeRequest(BaseModel):
    bars: list[Bar] = Field(min_length=1, max_length=MAX_BARS)


class BodyLimit:
    """ASGI middleware: a 413 once a request body passes ``max_bytes``, whether its
    length is declared (``Content-Length``) or it arrives in chunks."""

    def __init__(self, app: Any, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        detail = f"request body is over the limit of {self.max_bytes} bytes"
        length = dict(scope.get("headers") or []).get(b"content-length", b"")
        if length.isdigit() and int(length) > self.max_bytes:
            await JSONResponse(status_code=413, content={"detail": detail})(scope, receive, send)
            return
        seen = 0

        async def limited() -> dict:
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


def _whole_seconds_utc(values: list[str]) -> np.ndarray | None:
    """``YYYY-MM-DDTHH:MM:SS`` strings in UTC (``Z``, ``+00:00`` or no zone), as numpy
    parses them in a tenth of pandas' time; None for anything else."""
    suffix = values[0][19:] if isinstance(values[0], str) else None
    if suffix not in ("Z", "+00:00", ""):
        return None
    size = 19 + len(suffix)
    if not all(isinstance(v, str) and len(v) == size and v.endswith(suffix) for v in values):
        return None
    try:
        stamps = np.array([v[:19] for v in values], dtype="datetime64[s]")
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
    if all(isinstance(v, str) and v[4:5] == "-" for v in values):
        parsed = parse_text_timestamps([v.strip() for v in values])
    else:
        parsed = parse_timestamps(pd.Series([str(v) for v in values], dtype=object))
    return parsed.to_numpy(dtype="datetime64[ns]").view("int64")


def request_series(bars: list[Bar], *, source: str = "request") -> list[SeriesBars]:
    """The request's bars, one clean series per symbol, cleaned as ingest cleans a file
    (invalid bars are dropped and counted; a repeated bar with other values is refused).

    Raises
    ------
    InputDataError
        If every bar is invalid, or the last one is: the answer is about the newest
        bar, so rather than answer silently for an older one, it says so.
    """
    ts = request_timestamps([b.timestamp for b in bars])
    values = np.array([(b.open, b.high, b.low, b.close, b.volume) for b in bars],
                      dtype="float64")
    symbols = [b.symbol for b in bars]
    distinct = sorted(set(symbols))
    if len(distinct) == 1:
        series = [clean_series(ts, values, symbol=distinct[0], source=source)]
    else:
        named = np.array(symbols, dtype=object)
        series = [clean_series(ts[named == s], values[named == s], symbol=s, source=source)
                  for s in distinct]
    if not any(len(s) for s in series):
        dropped = {k: sum(s.dropped[k] for s in series) for k in series[0].dropped}
        detail = ", ".join(f"{k} {v}" for k, v in dropped.items() if v)
        raise InputDataError(f"{source}: all {len(bars)} rows are invalid ({detail})")
    last = next(s for s in series if s.symbol == bars[-1].symbol)
    if ts[-1] == NAT or ts[-1] not in last.timestamp:
        raise InputDataError(f"{source}: the last bar ({bars[-1].timestamp}) is invalid (a bad "
                             "timestamp, or prices that are missing, non-positive or "
                             "outside high-low); send it corrected or without it")
    return [s for s in series if len(s)]


def create_app(model_folder: str | Path, *, store: PredictionStore | None = None,
               max_body_bytes: int = MAX_BODY_BYTES) -> FastAPI:
    """The application for one model folder, loaded once.

    Parameters
    ----------
    model_folder : path
    store : PredictionStore, optional
        Where answers are appended; None keeps none.
    max_body_bytes : int
        Larger request bodies get a 413 before they are parsed.
    """
    folder = str(model_folder)
    manifest = read_manifest(folder)
    model = load_model(folder)
    version = model_version(folder)
    app = FastAPI(title="regimelab", version=manifest["regimelab_version"])
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)

    @app.exception_handler(StoreError)
    async def store_error(request: Request, exc: StoreError) -> JSONResponse:
        return JSONResponse(status_code=503, content={"detail": str(exc)})

    @app.exception_handler(RegimelabError)
    async def user_error(request: Request, exc: RegimelabError) -> JSONResponse:
        return JSONResponse(status_code=422, content={"detail": str(exc)})

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {"status": "ok", "model": manifest["model"], "n_states": model.n_states,
                "model_version": version}

    @app.get("/model")
    def describe() -> dict[str, Any]:
        return {**manifest, "model_version": version}

    # The body is parsed and validated in one pass by pydantic's JSON parser, about
    # three times faster than FastAPI's json.loads then validation; the schema is
    # declared for the OpenAPI page by hand. The handler runs on the event loop: the
    # work is a few milliseconds of CPU, for which a thread pool adds only a hand-off.
    @app.post("/regime", openapi_extra={"requestBody": {"required": True, "content": {
        "application/json": {"schema": RegimeRequest.model_json_schema()}}}})
    async def regime(request: Request) -> dict[str, Any]:
        try:
            body = RegimeRequest.model_validate_json(await request.body())
        except ValidationError as exc:
            raise RequestValidationError(exc.errors(include_url=False)) from None
        now = pd.Timestamp.now(tz="UTC")
        rows = [latest_series(model, manifest, s.symbol, s.timestamp, s.columns,
                              lookback=MAX_BARS, as_of=now, source="request")
                for s in request_series(body.bars)]
        if store is not None:
            store.append(rows, source="serve", model=folder, version=version)
        k = model.n_states
        answers = [{"symbol": r["symbol"], "timestamp": r["timestamp"].isoformat(),
                    "state": r["state"], "bars": r["bars"], "unclosed": r["unclosed"],
                    "probabilities": [r[f"p_filter_{i}"] for i in range(k)]}
                   for r in rows]
        return {"model_version": version, "model": manifest["model"],
                "n_states": k, **(answers[0] if len(answers) == 1 else {"symbols": answers})}

    return app


def serve(model_folder: str | Path, *, host: str = "127.0.0.1", port: int = 8080,
          store: PredictionStore | None = None) -> None:
    """Run the application with uvicorn until interrupted (loopback unless told)."""
    import uvicorn

    app = create_app(model_folder, store=store)
    # What is loaded now lives as long as the server: out of the collector's way, a
    # full collection no longer walks torch's and pandas' objects during a request.
    gc.collect()
    gc.freeze()
    log.info("serving %s on http://%s:%d", model_folder, host, port)
    uvicorn.run(app, host=host, port=port, log_level="warning")

