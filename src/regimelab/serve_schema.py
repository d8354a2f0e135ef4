"""What ``regimelab serve``'s OpenAPI page says: a valid request, and every answer.

The service validates a request with a typed-dict adapter (:data:`regimelab.serve.REQUEST`),
for speed, and then cleans its bars as ingest cleans a file: a bar that breaks a
constraint documented here is dropped, not refused, unless it is a symbol's last bar.
These models are the documentation of a valid bar and of each answer, and
tests/test_serve.py fuzzes the running service against them (schemathesis).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, WithJsonSchema

MAX_BODY_BYTES = 2_000_000  # about 10,000 bars of JSON
MAX_BARS = 10_000
DEFAULT_SYMBOL = "INPUT"

ISO_8601 = r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:?\d{2})?$"


class BarDoc(BaseModel):
    """One bar. Also required, where JSON Schema cannot say it: `high` at least `low`,
    `open` and `close` within [`low`, `high`], and bars at the model's interval. A bar
    that breaks a constraint is dropped, as ingest drops it, unless it is a symbol's
    last bar: that is a 422."""

    model_config = ConfigDict(title="Bar")

    timestamp: (Annotated[str, Field(pattern=ISO_8601)]
                | Annotated[float, Field(ge=0)]) = Field(
        description="The bar's open time: ISO-8601 (UTC unless it has an offset), or a "
                    "Unix epoch in seconds, milliseconds, microseconds or nanoseconds "
                    "(told by its size; from 1990)",
        examples=["2026-04-29T08:00:00Z"])
    open: float = Field(gt=0)
    high: float = Field(gt=0, description="At least low, open and close")
    low: float = Field(gt=0)
    close: float = Field(gt=0)
    volume: float = Field(ge=0)
    symbol: str = Field(DEFAULT_SYMBOL, description="One answer per symbol")


class RegimeRequestDoc(BaseModel):
    model_config = ConfigDict(title="RegimeRequest")

    bars: list[BarDoc] = Field(min_length=1, max_length=MAX_BARS,
                               description="Recent bars, oldest first")


class HorizonForecast(BaseModel):
    """The next-regime forecasts h bars ahead of the last closed bar: the regime model's
    Markov chain always; the forecast stage's learned models when the service was started
    with a forecast model folder (each field where that folder has the task)."""

    horizon: int = Field(ge=1, description="Bars ahead")
    markov: list[float] = Field(description="The chain's P(state = k at t + h), "
                                            "p_filter A^h, k = 0..K-1")
    markov_switch: float = Field(ge=0, le=1, description="The chain's P(at least one switch "
                                                         "in t + 1 .. t + h)")
    learned: list[float] | None = Field(None, description="The learned model's P(hindsight "
                                                          "state = k at t + h)")
    learned_model: str | None = Field(None, description="The model that gave `learned`")
    switch: float | None = Field(None, ge=0, le=1, description="The learned model's P(a "
                                                               "switch within h bars)")
    switch_model: str | None = None
    bull: float | None = Field(None, ge=0, le=1, description="The learned model's P(a bull "
                                                             "market at t + h)")
    bull_model: str | None = None


VOL_UNIT = ("Realised volatility over the next h bars together: the square root of the "
            "forecast sum of the per-bar variance proxy over bars t + 1 .. t + h, in log-return "
            "units (0.01 is 1%), not per bar and not annualised; null where the model has no "
            "forecast")


class HorizonVolatility(BaseModel):
    """The volatility forecasts h bars ahead of the last closed bar, one per forecast-vol
    model the service was started with (`--vol-model`). Each is the realised volatility
    over the next h bars together: the square root of the forecast sum of the per-bar
    variance proxy (Parkinson's high-low range by default) over bars t + 1 .. t + h, in
    log-return units (0.01 is 1%), not annualised. A model is null where it has no
    forecast: a HAR model with fewer than half its month window of bars (360 hourly bars)
    before the bar, a GARCH model for a symbol the stage did not fit."""

    horizon: int = Field(ge=1, description="Bars ahead")
    garch: float | None = Field(None, ge=0, description="GARCH(1,1)'s forecast. " + VOL_UNIT)
    har: float | None = Field(None, ge=0, description="HAR's (the mean proxy over the last "
                                                      "day, week and month). " + VOL_UNIT)
    har_regimes: float | None = Field(None, ge=0, description="HAR's with the filtered regime "
                                                              "posteriors. " + VOL_UNIT)
    garch_mz: float | None = Field(None, ge=0, description="GARCH's recalibrated to the "
                                                           "proxy. " + VOL_UNIT)
    garch_regimes: float | None = Field(None, ge=0, description="garch_mz's with the filtered "
                                                                "regime posteriors. "
                                                                + VOL_UNIT)


class SymbolAnswer(BaseModel):
    """The regime of a symbol's last closed bar."""

    symbol: str
    timestamp: str = Field(description="The bar's open time, ISO-8601 with its offset")
    state: int = Field(ge=0)
    regime: str = Field(description="The state's name (calm bull, volatile bear, crash, ...), "
                                    "from the model's training statistics")
    bars: int = Field(ge=1, description="Bars of its gap-free run that the filter read")
    unclosed: int = Field(ge=0, description="Bars left out: not closed by the server's clock")
    probabilities: list[float] = Field(description="The filtered P(state = k), k = 0..K-1")
    forecasts: list[HorizonForecast] = Field(description="One per horizon")
    volatility: list[HorizonVolatility] | None = Field(
        None, description="The forecast-vol models' volatility forecasts, one per horizon of "
                          "those models; null unless the service was started with "
                          "`--vol-model`")


class RegimeAnswer(SymbolAnswer):
    """The answer for bars of one symbol."""

    model_version: str
    model: str
    n_states: int


class RegimeAnswers(BaseModel):
    """The answer for bars of several symbols: one per symbol, in symbol order."""

    model_version: str
    model: str
    n_states: int
    symbols: list[SymbolAnswer]


class Health(BaseModel):
    status: str
    model: str
    n_states: int
    model_version: str


class ModelDescription(BaseModel):
    """The model folder's manifest (features, scaler, state order, training data hash,
    library versions, ...) and the model version."""

    model_config = ConfigDict(extra="allow")

    model: str
    features: list[str]
    model_version: str


class Problem(BaseModel):
    loc: list[str | int] = Field(description="Where in the body, e.g. [\"bars\", 0, \"high\"]")
    msg: str
    type: str


class ErrorAnswer(BaseModel):
    """Every error's answer: the documented 413, 422, 500 and 503, and the 404 and 405
    of a path or method the service does not have."""

    detail: str = Field(description="One line: what is wrong and what was expected")
    errors: list[Problem] | None = Field(
        None, description="With a body that is not JSON or does not match the schema: "
                          "each problem")


def _error(description: str) -> dict[str, Any]:
    return {"model": ErrorAnswer, "description": description}


ANSWERS: dict[int | str, dict[str, Any]] = {
    200: {"description": "The regime of the last closed bar, one answer per symbol"},
    413: _error(f"The body is over the limit ({MAX_BODY_BYTES:,} bytes by default)"),
    422: _error("The body is not JSON or does not match the schema (`errors` lists each "
                "problem), or the model cannot use the bars (another interval, too few, the "
                "last one invalid or not closed yet)"),
    503: _error("The prediction store cannot be written"),
}

#: Every path's 500: a bug in regimelab, whose traceback is in the server's log.
SERVER_ERROR = _error("A bug in regimelab: the detail names the exception; the server's "
                      "log has its traceback")


def inline_refs(schema: dict[str, Any]) -> dict[str, Any]:
    """A pydantic JSON schema with its ``$defs`` written in place, for an OpenAPI
    document (which has no ``#/$defs`` to point to)."""
    defs = schema.pop("$defs", {})

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref", "")
            if ref.startswith("#/$defs/"):
                return walk(defs[ref.removeprefix("#/$defs/")])
            return {k: walk(v) for k, v in node.items()}
        return [walk(v) for v in node] if isinstance(node, list) else node

    return walk(schema)


def documented(model: Any) -> Any:
    """A response model that answers as a plain dict (FastAPI then writes it to JSON in
    pydantic's core, a few microseconds, where a ``response_model=None`` answer takes
    json.dumps' tens) and shows ``model``'s schema on the OpenAPI page."""
    return Annotated[dict[str, Any],
                     WithJsonSchema(inline_refs(TypeAdapter(model).json_schema()))]
