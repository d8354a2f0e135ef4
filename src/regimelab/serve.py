"""``regimelab serve``: the regime of the latest bar over HTTP (FastAPI, run by uvicorn).

- ``POST /regime`` with ``{"bars": [{"timestamp", "open", "high", "low", "close",
  "volume"[, "symbol"]}, ...]}`` (recent bars, oldest first) returns the state
  of the last bar, its filtered probabilities and the model version;
- ``GET /health``; ``GET /model`` (the manifest).

Bad input is a 422 with a message (a body over the size limit a 413), never a
500. Each answer is appended to the prediction store.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pandas as pd
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from regimelab.data.readers import parse_timestamps
from regimelab.data.validate import validate_bars
from regimelab.exceptions import InputDataError, RegimelabError
from regimelab.inference import latest
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


def request_bars(bars: list[Bar]) -> pd.DataFrame:
    """The request's bars, cleaned as ingest cleans a file."""
    raw = pd.DataFrame([b.model_dump() for b in bars])
    raw["timestamp"] = parse_timestamps(raw["timestamp"].astype(str))
    raw["_file"] = "request"
    clean = validate_bars(raw, max_invalid_fraction=1.0, source="request").bars
    # The answer is about the newest bar: if it was dropped, say so rather than
    # answer silently for an older one.
    last = raw.iloc[-1]
    kept = clean.loc[clean["symbol"] == last["symbol"], "timestamp"]
    if pd.isna(last["timestamp"]) or not (kept == last["timestamp"]).any():
        raise InputDataError(f"request: the last bar ({bars[-1].timestamp}) is invalid (a bad "
                             "timestamp, or prices that are missing, non-positive or "
                             "outside high-low); send it corrected or without it")
    return clean


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

    @app.post("/regime")
    def regime(body: RegimeRequest) -> dict[str, Any]:
        bars = request_bars(body.bars)
        rows = latest(model, bars, manifest, lookback=MAX_BARS, source="request")
        if store is not None:
            store.append(rows, source="serve", model=folder, version=version)
        k = model.n_states
        answers = [{"symbol": r["symbol"], "timestamp": r["timestamp"].isoformat(),
                    "state": int(r["state"]), "bars": int(r["bars"]),
                    "probabilities": [float(r[f"p_filter_{i}"]) for i in range(k)]}
                   for _, r in rows.iterrows()]
        return {"model_version": version, "model": manifest["model"],
                "n_states": k, **(answers[0] if len(answers) == 1 else {"symbols": answers})}

    return app


def serve(model_folder: str | Path, *, host: str = "127.0.0.1", port: int = 8080,
          store: PredictionStore | None = None) -> None:
    """Run the application with uvicorn until interrupted (loopback unless told)."""
    import uvicorn

    app = create_app(model_folder, store=store)
    log.info("serving %s on http://%s:%d", model_folder, host, port)
    uvicorn.run(app, host=host, port=port, log_level="warning")

