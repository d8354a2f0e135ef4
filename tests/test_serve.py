"""The REST service, started for real on an ephemeral loopback port."""

from __future__ import annotations

import contextlib
import http.client
import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import uvicorn

from regimelab import serve
from regimelab.data import validate_bars
from regimelab.data.readers import parse_timestamps
from regimelab.inference import observations, regimes
from regimelab.models import load_model, model_version, read_manifest
from regimelab.serve import create_app, request_timestamps
from regimelab.serve_schema import ErrorAnswer
from regimelab.store import PredictionStore, StoreError
from regimelab.synth import make_market
from tests.stages.test_model_stages import outputs, scaled  # noqa: F401  (fixtures)


def bars_json(frame: pd.DataFrame) -> list[dict]:
    return [{"timestamp": ts.isoformat(), "open": o, "high": h, "low": lo, "close": c,
             "volume": v, "symbol": "SYN"}
            for ts, o, h, lo, c, v in frame[["timestamp", "open", "high", "low", "close",
                                             "volume"]].itertuples(index=False)]


@pytest.fixture(scope="module")
def recent() -> pd.DataFrame:
    return make_market(400, n_regimes=3, random_state=33)


@contextlib.contextmanager
def running(app: object) -> Iterator[str]:
    """``app`` served by uvicorn on a free loopback port, in a thread; yields its URL."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("the server did not start")
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def server(outputs: Path, tmp_path_factory: pytest.TempPathFactory  # noqa: F811
           ) -> Iterator[tuple[str, PredictionStore]]:
    store = PredictionStore(f"sqlite:///{tmp_path_factory.mktemp('store') / 'p.db'}")
    with running(create_app(outputs / "models/hmm", store=store,
                            max_body_bytes=200_000)) as url:
        yield url, store


def call(url: str, body: object | None = None, *, raw: bytes | None = None
         ) -> tuple[int, dict]:
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    request = urllib.request.Request(url, data=data,
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=20) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_health_and_model(server: tuple[str, PredictionStore], outputs: Path  # noqa: F811
                          ) -> None:
    url, _ = server
    status, health = call(f"{url}/health")
    assert status == 200 and health["status"] == "ok"
    assert health["model_version"] == model_version(outputs / "models/hmm")
    status, manifest = call(f"{url}/model")
    assert status == 200
    assert manifest["features"] == read_manifest(outputs / "models/hmm")["features"]


def test_regime_of_the_last_bar_equals_the_library(server: tuple[str, PredictionStore],
                                                   outputs: Path,  # noqa: F811
                                                   recent: pd.DataFrame) -> None:
    url, store = server
    before = len(store.history())
    status, answer = call(f"{url}/regime", {"bars": bars_json(recent)})
    assert status == 200, answer
    # The service's numpy path against the batch path (pandas): ingest's
    # validation, the feature table, the scaler and the filter over every bar.
    folder = outputs / "models/hmm"
    manifest = read_manifest(folder)
    bars = validate_bars(recent.assign(symbol="SYN", _file="request")).bars
    expected = regimes(load_model(folder), observations(bars, manifest),
                       manifest["features"]).iloc[-1]
    assert answer["timestamp"] == expected["timestamp"].isoformat()
    assert answer["state"] == expected["state_filtered"]
    assert answer["unclosed"] == 0
    k = answer["n_states"]
    np.testing.assert_allclose(answer["probabilities"],
                               expected[[f"p_filter_{i}" for i in range(k)]].astype(float),
                               rtol=0, atol=1e-12)
    assert answer["model_version"] == model_version(folder)
    assert answer["regime"] == manifest["regime_names"][answer["state"]]
    # The chain's next-regime forecasts, p_filter A^h, at the default horizons.
    transmat = load_model(folder).transmat_
    assert [f["horizon"] for f in answer["forecasts"]] == [1, 24]
    for f in answer["forecasts"]:
        p = np.asarray(answer["probabilities"])
        np.testing.assert_allclose(f["markov"],
                                   p @ np.linalg.matrix_power(transmat, f["horizon"]),
                                   rtol=0, atol=1e-12)
        # No switch in h bars: staying put h times, sum_i p_i A_ii^h.
        assert f["markov_switch"] == pytest.approx(
            1 - p @ np.diag(transmat) ** f["horizon"], abs=1e-12)
        assert "learned" not in f  # no forecast model folder given
    stored = store.history()
    assert len(stored) == before + 1 and stored["source"].iloc[-1] == "serve"


def test_a_jump_model_is_served_like_the_others(outputs: Path,  # noqa: F811
                                                recent: pd.DataFrame) -> None:
    folder = outputs / "models/jump"
    with running(create_app(folder, store=None)) as url:
        status, answer = call(f"{url}/regime", {"bars": bars_json(recent)})
    assert status == 200, answer
    manifest = read_manifest(folder)
    bars = validate_bars(recent.assign(symbol="SYN", _file="request")).bars
    expected = regimes(load_model(folder), observations(bars, manifest),
                       manifest["features"]).iloc[-1]
    assert answer["model"] == "jump" and answer["state"] == expected["state_filtered"]
    assert answer["regime"] == manifest["regime_names"][answer["state"]]
    # Hard labels: the filtered row is one-hot.
    assert sorted(answer["probabilities"])[-1] == 1.0 and sum(answer["probabilities"]) == 1.0


@pytest.mark.parametrize("body, status, needle", [
    ({"bars": []}, 422, "at least 1"),
    ({"bars": [{"timestamp": "2020-01-01T00:00:00Z", "open": 1.0}]}, 422, "high"),
    ({"rows": []}, 422, "bars"),
])
def test_malformed_requests_are_422(server: tuple[str, PredictionStore], body: dict,
                                    status: int, needle: str) -> None:
    code, answer = call(f"{server[0]}/regime", body)
    assert code == status and needle in answer["detail"]
    # One shape for every error: a one-line detail; here each problem too.
    assert answer["detail"].startswith("request: ") and "\n" not in answer["detail"]
    assert answer["errors"] and set(answer["errors"][0]) == {"loc", "msg", "type"}


def test_bars_the_model_cannot_use_are_422_with_a_message(
        server: tuple[str, PredictionStore], recent: pd.DataFrame) -> None:
    daily = make_market(60, n_regimes=2, freq="1D", random_state=2)
    code, answer = call(f"{server[0]}/regime", {"bars": bars_json(daily)})
    assert code == 422
    assert answer["detail"].startswith("request: SYN: bars are 1d apart, but the model was "
                                       "trained on 1h bars")
    broken = recent.head(50).assign(close=-1.0)
    code, answer = call(f"{server[0]}/regime", {"bars": bars_json(broken)})
    assert code == 422 and "request" in answer["detail"]
    code, answer = call(f"{server[0]}/regime", raw=b"{not json")
    assert code == 422
    code, answer = call(f"{server[0]}/regime", raw=b"\xff\xfe{")  # not even UTF-8
    assert code == 422
    code, answer = call(f"{server[0]}/regime", {"bars": bars_json(recent.tail(1))})
    assert code == 422 and answer["detail"] == (
        "request: symbol SYN has a single valid bar, so its interval cannot be inferred; "
        "send more recent bars")


def test_a_body_over_the_limit_is_413(server: tuple[str, PredictionStore],
                                      recent: pd.DataFrame) -> None:
    big = {"bars": bars_json(pd.concat([recent] * 3))}
    code, answer = call(f"{server[0]}/regime", big)
    assert code == 413 and "over the limit" in answer["detail"]


def test_a_chunked_body_over_the_limit_is_413(server: tuple[str, PredictionStore],
                                              recent: pd.DataFrame) -> None:
    """No Content-Length to trust: the limit counts the bytes as they arrive."""
    body = json.dumps({"bars": bars_json(pd.concat([recent] * 3))}).encode()
    host, port = server[0].removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=20)
    conn.putrequest("POST", "/regime")
    conn.putheader("Content-Type", "application/json")
    conn.putheader("Transfer-Encoding", "chunked")
    conn.endheaders()
    for start in range(0, len(body), 16_384):
        chunk = body[start:start + 16_384]
        conn.send(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
    conn.send(b"0\r\n\r\n")
    response = conn.getresponse()
    assert response.status == 413
    assert "over the limit" in json.loads(response.read())["detail"]
    conn.close()


def test_a_timestamp_out_of_range_is_422(server: tuple[str, PredictionStore],
                                         recent: pd.DataFrame) -> None:
    rows = bars_json(recent.head(60))
    rows[-1]["timestamp"] = "9999-12-31T00:00:00Z"
    code, answer = call(f"{server[0]}/regime", {"bars": rows})
    assert code == 422 and answer["detail"].startswith("request: the last bar (9999-12-31")


def test_the_bar_still_forming_is_left_out(server: tuple[str, PredictionStore],
                                           recent: pd.DataFrame) -> None:
    """Exchanges send the current candle too: the answer is about the last closed one."""
    # The last bar opened half an hour ago: it closes in half an hour.
    shift = pd.Timestamp.now(tz="UTC") - pd.Timedelta(minutes=30) - recent["timestamp"].iloc[-1]
    live = recent.assign(timestamp=recent["timestamp"] + shift)
    code, answer = call(f"{server[0]}/regime", {"bars": bars_json(live)})
    assert code == 200, answer
    assert answer["unclosed"] == 1
    assert answer["timestamp"] == live["timestamp"].iloc[-2].isoformat()
    future = recent.assign(timestamp=recent["timestamp"] + shift + pd.Timedelta(days=30))
    code, answer = call(f"{server[0]}/regime", {"bars": bars_json(future)})
    assert code == 422 and "no bar has closed by" in answer["detail"]


def test_a_symbol_whose_last_bar_is_invalid_is_refused(server: tuple[str, PredictionStore],
                                                      recent: pd.DataFrame) -> None:
    other = [dict(r, symbol="OTHER") for r in bars_json(recent.tail(200))]
    other[-1]["close"] = -1.0
    code, answer = call(f"{server[0]}/regime", {"bars": other + bars_json(recent)})
    assert code == 422 and answer["detail"].startswith("request: the last OTHER bar (")


def test_the_openapi_page_describes_the_request(server: tuple[str, PredictionStore]) -> None:
    code, spec = call(f"{server[0]}/openapi.json")
    assert code == 200
    post = spec["paths"]["/regime"]["post"]
    body = post["requestBody"]["content"]["application/json"]
    bar = body["schema"]["properties"]["bars"]["items"]
    assert set(bar["required"]) == {"timestamp", "open", "high", "low", "close", "volume"}
    for price in ("open", "high", "low", "close"):
        assert bar["properties"][price]["exclusiveMinimum"] == 0
    assert bar["properties"]["volume"]["minimum"] == 0
    assert "pattern" in bar["properties"]["timestamp"]["anyOf"][0]
    assert "$defs" not in json.dumps(spec)
    # Every answer is documented, each error with the one error shape.
    assert set(post["responses"]) == {"200", "413", "422", "500", "503"}
    for code in ("413", "422", "500", "503"):
        ref = post["responses"][code]["content"]["application/json"]["schema"]["$ref"]
        assert ref == "#/components/schemas/ErrorAnswer"
    error = spec["components"]["schemas"]["ErrorAnswer"]
    assert error["required"] == ["detail"] and error["properties"]["detail"]["type"] == "string"
    one, several = post["responses"]["200"]["content"]["application/json"]["schema"]["anyOf"]
    assert {"model_version", "timestamp", "state", "probabilities"} <= set(one["required"])
    assert {"model_version", "symbols"} <= set(several["required"])
    for path in ("/health", "/model"):
        responses = spec["paths"][path]["get"]["responses"]
        assert "model_version" in responses["200"]["content"]["application/json"]["schema"][
            "required"]
        assert responses["500"]["content"]["application/json"]["schema"]["$ref"] == (
            "#/components/schemas/ErrorAnswer")


def test_every_error_has_the_one_shape(server: tuple[str, PredictionStore],
                                       outputs: Path,  # noqa: F811
                                       recent: pd.DataFrame,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Whoever answers (the router, the body limit, validation, the model, the store or a
    bug), an error is ErrorAnswer: a one-line ``detail``, and ``errors`` only for a body
    that does not match the schema."""
    url, store = server
    valid = {"bars": bars_json(recent)}
    answers = {
        "no such path": (404, call(f"{url}/regimes", valid)),
        "wrong method": (405, call(f"{url}/health", valid)),
        "too large": (413, call(f"{url}/regime", {"bars": bars_json(pd.concat([recent] * 3))})),
        "malformed": (422, call(f"{url}/regime", {"bars": []})),
        "unusable": (422, call(f"{url}/regime", {"bars": bars_json(recent.tail(1))})),
    }

    def cannot_write(*args: object, **kwargs: object) -> int:
        raise StoreError("prediction store sqlite:///p.db: cannot write (disk I/O error)")

    monkeypatch.setattr(store, "append", cannot_write)
    answers["store"] = (503, call(f"{url}/regime", valid))
    monkeypatch.undo()

    def bug(*args: object, **kwargs: object) -> None:
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(serve, "latest_series", bug)
    # A server of its own, stopped before the test ends: it logs the bug's traceback
    # from its thread, and Python 3.11's traceback formatting (ast.parse, for the
    # carets) must not race a later test's imports.
    with running(create_app(outputs / "models/hmm", store=None)) as own:
        answers["bug"] = (500, call(f"{own}/regime", valid))
    for what, (expected, (status, answer)) in answers.items():
        assert status == expected, (what, answer)
        ErrorAnswer.model_validate(answer, strict=True)
        assert set(answer) <= {"detail", "errors"}, what
        assert answer["detail"] and "\n" not in answer["detail"], what
        assert ("errors" in answer) is (what == "malformed"), what
    assert answers["no such path"][1][1]["detail"].startswith("/regimes: no such path")
    assert answers["wrong method"][1][1]["detail"] == (
        "POST /health: method not allowed; expected GET")
    assert answers["store"][1][1]["detail"].startswith("prediction store ")
    assert answers["bug"][1][1]["detail"] == (
        "internal error (ZeroDivisionError); see the server's log")


def test_the_service_keeps_to_its_schema_under_fuzzing(server: tuple[str, PredictionStore],
                                                      recent: pd.DataFrame) -> None:
    """Schemathesis against the running service (loopback): requests generated from the
    OpenAPI schema, valid ones and broken ones, and two real requests, get no 500, and
    every answer has a documented status and matches its documented schema.

    A schema-valid request is never refused as malformed; it is not checked that it gets a
    200: a generated one is almost never usable (its bars are at no fixed interval, its
    dates are anywhere), and the 422 that says so is documented."""
    schemathesis = pytest.importorskip("schemathesis")
    from hypothesis import HealthCheck, Phase, given, settings
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        response_headers_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    checks = [not_a_server_error, status_code_conformance, content_type_conformance,
              response_headers_conformance, response_schema_conformance]
    url, _ = server
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    statuses: dict[tuple[str, str], set[int]] = {}
    regime = schema["/regime"]["POST"]
    for body in ({"bars": bars_json(recent)},
                 {"bars": bars_json(recent) + [dict(r, symbol="OTHER")
                                               for r in bars_json(recent.tail(100))]}):
        assert regime.Case(body=body).call_and_validate(base_url=url, checks=checks
                                                        ).status_code == 200
    positive, negative = schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE

    def fuzz(operation: Any, mode: Any) -> None:
        seen = statuses.setdefault((operation.label, mode.value), set())

        # Bounded: 100 bodies of each kind, 10-15 s in all; derandomized, no database.
        @settings(max_examples=100, deadline=None, database=None, derandomize=True,
                  phases=[Phase.explicit, Phase.generate],
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
        @given(case=operation.as_strategy(generation_mode=mode))
        def run(case: Any) -> None:
            response = case.call_and_validate(base_url=url, checks=checks)
            seen.add(response.status_code)
            if mode is positive and response.status_code == 422:
                # Refused for what it means (its bars), never as malformed: the schema
                # says what the validator accepts.
                assert "errors" not in response.json(), response.json()

        run()

    for operation in (schema["/health"]["GET"], schema["/model"]["GET"], regime):
        fuzz(operation, positive)
    fuzz(regime, negative)  # the GETs have no parameters and no body: nothing to break
    assert statuses[("POST /regime", "positive")] <= {200, 413, 422}
    assert statuses[("POST /regime", "negative")] <= {413, 422}


def test_several_symbols_get_one_answer_each(server: tuple[str, PredictionStore],
                                             recent: pd.DataFrame) -> None:
    rows = bars_json(recent) + [dict(r, symbol="OTHER") for r in bars_json(recent.tail(200))]
    code, answer = call(f"{server[0]}/regime", {"bars": rows})
    assert code == 200, answer
    assert [a["symbol"] for a in answer["symbols"]] == ["OTHER", "SYN"]
    other, syn = answer["symbols"]
    assert other["bars"] < syn["bars"] and other["timestamp"] == syn["timestamp"]


@pytest.mark.parametrize("values", [
    ["2024-01-01T00:00:00Z", "2024-01-01T01:00:00Z"],
    ["2024-01-01T00:00:00+00:00", "2024-01-01T01:00:00+00:00"],
    ["2024-01-01T00:00:00", "2024-01-01 01:00:00"],
    ["9999-12-31T00:00:00Z", "1600-01-01T00:00:00Z", "2024-01-01T00:00:00Z"],
    ["2024-13-01T00:00:00Z", "2024-01-01T00:00:00Z"],
    ["2024-01-01T00:00:00+01:00", "2024-01-01T00:00:00.5Z", " 2024-01-01T03:00:00Z"],
    [1704067200, 1704067200000, 1704067200.5],
    ["1704067200", "20240131", "not a date"],
])
def test_request_timestamps_read_as_ingest_reads_a_file(values: list) -> None:
    """The service's shortcuts for common timestamps give what ingest's parser gives."""
    expected = parse_timestamps(pd.Series([str(v) for v in values], dtype=object))
    np.testing.assert_array_equal(
        request_timestamps(values), expected.to_numpy(dtype="datetime64[ns]").view("int64"))
