"""Latency of `regimelab serve`: POST /regime with 500 bars, on loopback, both models.

The trained models of the pipeline (`models/hmm`, `models/dssm`; run `dvc repro`
first) are served by two `regimelab serve` processes each, on free 127.0.0.1
ports, one with the prediction store on (SQLite, the default) and one without.
One client sends requests one after another over kept-alive connections, the
two servers taking turns request by request so that the machine's slow spells
fall on both: a bounded number (`--requests`, default 300, to each) within a
bounded time (`--seconds`, default 60), never anywhere but loopback. Each
request is another 500-bar window, sliding one bar at a time over the last
BTC bars as a live feed would send them; the same window twice would hit the
DSSM's cache.

Measured in the same run, without HTTP:

- the service's own path, `request_series` and `latest_series` (numpy);
- the plain-library way, what a user of the batch API would write:
  `validate_bars` on a DataFrame of the bars, `observations`, the model's
  `filter_proba`, last row (pandas; this was the service's path before);
- the DSSM's context pass, compiled (numba) against the same loop in numpy;
- with the forecast stage's `models/forecast` in place, the service's path on
  its family's model with and without the learned next-regime forecasters
  (`--forecast-model`; the chain's forecasts are in both), under the one-thread
  limits `regimelab serve` sets: the headline learned models (trees, GRU, LSTM,
  Transformer) on the inputs built on arrays (the service's path), the same
  models on the inputs built as the batch path builds them (pandas' groupby
  over the run), and the path before sequence models were applied (each task's
  best tree, pandas inputs); the first two give the same forecasts (checked);
- with the forecast-vol stage's `models/forecast_vol` in place, the service's path on
  its regime model (`models/dssm` by default) without and with the volatility
  forecasts (`--vol-model`), under the same one-thread limits.

Usage::

    .venv/bin/python benchmarks/bench_serve.py        # about three minutes on 2 cores
    .venv/bin/python benchmarks/bench_serve.py --vol-only   # the `--vol-model` block alone
"""

from __future__ import annotations

import argparse
import http.client
import json
import logging
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import expit, log_softmax

from regimelab.data import ingest, validate_bars
from regimelab.families.dssm.net import _SQ_FLOOR, LOG_2PI
from regimelab.forecast.apply import (
    Forecaster,
    Task,
    load_forecaster,
    load_task_model,
)
from regimelab.forecast.inputs import build_inputs
from regimelab.forecast.labels import date_bull_bear
from regimelab.forecast.vol_apply import load_vol_models
from regimelab.inference import latest_series, observations
from regimelab.models import load_model, model_version, read_manifest
from regimelab.sequences import to_sequences
from regimelab.serve import REQUEST, request_series

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "out"
WINDOWS = 40  # distinct 500-bar windows, sent in turn


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(folder: Path, store: str | None) -> tuple[subprocess.Popen, int]:
    port = free_port()
    command = [str(Path(sys.executable).with_name("regimelab")), "serve", "--model",
               str(folder), "--port", str(port)]
    command += ["--store", store] if store else ["--no-store"]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/health")
            if conn.getresponse().status == 200:
                conn.close()
                return server, port
        except OSError:
            time.sleep(0.2)
    server.kill()
    raise RuntimeError(f"the server did not start: {server.stderr.read().decode()[-2000:]}")


def percentiles(seconds: list[float]) -> dict[str, float]:
    ms = np.asarray(seconds) * 1e3
    return {"n": len(ms), "p50_ms": float(np.percentile(ms, 50)),
            "p99_ms": float(np.percentile(ms, 99)), "mean_ms": float(ms.mean())}


def timed(fn: Any, n: int) -> dict[str, float]:
    fn(0)  # the first call compiles or fills caches; a server has done it before its first
    seconds = []
    for i in range(n):
        t = time.perf_counter()
        fn(i)
        seconds.append(time.perf_counter() - t)
    return percentiles(seconds)


def serve_latency(ports: dict[str, int], payloads: list[bytes], *, requests: int,
                  seconds: float) -> dict[str, dict[str, float]]:
    """Each server's latency, the servers taking turns request by request, so a slow
    spell of the machine falls on all of them alike."""
    headers = {"Content-Type": "application/json"}
    conns = {label: http.client.HTTPConnection("127.0.0.1", port, timeout=10)
             for label, port in ports.items()}

    def post(conn: http.client.HTTPConnection, payload: bytes) -> float:
        t = time.perf_counter()
        conn.request("POST", "/regime", body=payload, headers=headers)
        response = conn.getresponse()
        body = response.read()
        elapsed = time.perf_counter() - t
        assert response.status == 200, body
        return elapsed

    for payload in payloads[:20]:  # warm-up: the first requests load code paths
        for conn in conns.values():
            post(conn, payload)
    served: dict[str, list[float]] = {label: [] for label in conns}
    deadline = time.monotonic() + seconds
    for i in range(requests):
        if time.monotonic() > deadline:
            break
        for label, conn in conns.items():
            served[label].append(post(conn, payloads[i % len(payloads)]))
    for conn in conns.values():
        conn.close()
    return {label: percentiles(times) for label, times in served.items()}


def numpy_context_pass(p: Any, X: np.ndarray) -> np.ndarray:
    """The DSSM's context loop written with one numpy call per operation (the
    implementation before it was compiled), for the ratio; returns the log emissions."""
    k, d = p.n_states, p.n_features
    white = np.einsum("kij,tkj->tki", p.inv_chol, X[:, None, :] - p.means)
    sq = white**2
    trans = np.exp(log_softmax(p.trans_logits, axis=1))
    w_ih, b_ih, w_hh, b_hh = p.gru[0].T, p.gru[1], p.gru[2].T, p.gru[3]
    scale_w, scale_b = p.scale[0].T, p.scale[1]
    hid = w_hh.shape[1]
    h, alpha, eye = np.zeros(hid), np.zeros(k), np.eye(d)
    log_emit = np.empty((len(X), k))
    for t in range(len(X)):
        s = p.max_log_scale * np.tanh((scale_w @ h + scale_b) / p.max_log_scale)
        if p.min_covar > 0:  # each bar's covariance L_k S_t^2 L_k^T + min_covar I
            cov = (p.chol * np.exp(2.0 * s)) @ p.chol.transpose(0, 2, 1) + p.min_covar * eye
            fac = np.linalg.cholesky(cov)
            z = np.linalg.solve(fac, (X[t] - p.means)[..., None])[..., 0]
            log_emit[t] = -0.5 * (d * LOG_2PI + (z**2).sum(axis=1)) - np.log(
                np.diagonal(fac, axis1=1, axis2=2)).sum(axis=1)
        else:
            log_emit[t] = -0.5 * (d * LOG_2PI + sq[t] @ np.exp(-2.0 * s)) - p.log_det - s.sum()
        alpha = (np.exp(p.log_start) if t == 0 else alpha @ trans) * np.exp(
            log_emit[t] - log_emit[t].max())
        alpha /= alpha.sum()
        u = np.concatenate([alpha @ white[t], np.log(_SQ_FLOOR + alpha @ sq[t])])
        gi, gh = w_ih @ u + b_ih, w_hh @ h + b_hh
        r, z = expit(gi[:hid] + gh[:hid]), expit(gi[hid:2 * hid] + gh[hid:2 * hid])
        h = (1.0 - z) * np.tanh(gi[2 * hid:] + r * gh[2 * hid:]) + z * h
    return log_emit


def without_http(model: Any, manifest: dict[str, Any], parsed: list, raw: list[pd.DataFrame],
                 window: pd.DataFrame, *, n: int) -> dict[str, Any]:
    """The service's path, the pandas path and, for the DSSM, the context pass."""
    now = pd.Timestamp.now(tz="UTC")

    def service_path(i: int) -> None:
        for s in request_series(parsed[i % WINDOWS]):
            latest_series(model, manifest, s.symbol, s.timestamp, s.columns,
                          lookback=10_000, as_of=now, source="request")

    def pandas_path(i: int) -> None:
        bars = validate_bars(raw[i % WINDOWS], max_invalid_fraction=1.0).bars
        X, lengths = to_sequences(observations(bars, manifest), manifest["features"])
        model.filter_proba(X[-lengths[-1]:], lengths[-1:])

    entry: dict[str, Any] = {"library": timed(service_path, n),
                             "pandas_path": timed(pandas_path, n)}
    if manifest["model"] == "dssm":
        X, _ = to_sequences(observations(window, manifest), manifest["features"])
        X = np.ascontiguousarray(X)
        np.testing.assert_allclose(numpy_context_pass(model._pass, X),
                                   model._pass.terms(X).log_emit, rtol=0, atol=1e-10)
        entry["context_pass"] = {
            "bars": len(X),
            # A new input each call: the model keeps the last results by their bytes.
            "compiled": timed(lambda i: model._pass.terms(X + (i + 1) * 1e-12), 50),
            "numpy": timed(lambda i: numpy_context_pass(model._pass, X + (i + 1) * 1e-12), 20)}
    return entry


def pandas_last_inputs(filtered: np.ndarray, features: dict[str, np.ndarray],
                       close: np.ndarray, *, columns: list[str], labeller: dict[str, Any],
                       rows: int = 1, at: np.ndarray | None = None) -> np.ndarray:
    """``last_inputs`` as it was before it was written on arrays: the batch path's
    ``build_inputs`` (pandas' groupby over the run), then the last ``rows`` rows."""
    n = len(filtered)
    tail = min(rows, n)
    table = pd.DataFrame({"split": np.zeros(n, dtype=np.int64),
                          "symbol": np.zeros(n, dtype=np.int64),
                          "segment": np.zeros(n, dtype=np.int64),
                          **{f"p_filter_{k}": filtered[:, k] for k in range(filtered.shape[1])}})
    inputs = build_inputs(table, pd.DataFrame(features), columns, n_states=filtered.shape[1],
                          windows=labeller["input_windows"]).iloc[-tail:].copy()
    dating = date_bull_bear(close, bull_threshold=labeller["bull_threshold"],
                            bear_threshold=labeller["bear_threshold"])
    where = (np.arange(len(close) - n, len(close)) if at is None else np.asarray(at))[-tail:]
    inputs["bull_bear_known"] = dating.known[where].astype(np.float64)
    inputs["bull_bear_move"] = dating.move[where].astype(np.float64)
    return inputs[labeller["inputs"]].to_numpy(dtype=np.float64)


def best_trees(folder: Path, forecaster: Forecaster) -> Forecaster:
    """Each task's best tree on the folds (the headline's ``tree``): what the CLI and
    the service applied before they applied sequence models."""
    headline = json.loads((folder / "headline.json").read_text())
    tasks = {}
    for name, task in forecaster.tasks.items():
        model = headline[name]["tree"]["model"]
        estimator, _ = load_task_model(folder / name / model)
        tasks[name] = Task(name, task.kind, task.horizon, task.classes, model, estimator)
    return Forecaster(forecaster.folder, forecaster.labeller, tasks)


def with_forecaster(parsed: list, *, n: int) -> dict[str, Any] | None:
    """The service's path on the forecast family's model, without and with the
    forecast stage's learned models (None when models/forecast is missing), under the
    one-thread limits the service runs with."""
    from unittest import mock

    from threadpoolctl import threadpool_limits

    import regimelab.inference

    folder = ROOT / "models" / "forecast"
    if not folder.is_dir():
        return None
    forecaster = load_forecaster(folder)
    trees = best_trees(folder, forecaster)
    regime = ROOT / "models" / forecaster.labeller["family"]
    model, manifest = load_model(regime), read_manifest(regime)
    now = pd.Timestamp.now(tz="UTC")

    def path(i: int, fc: Forecaster | None) -> list[dict[str, Any]]:
        return [latest_series(model, manifest, s.symbol, s.timestamp, s.columns,
                              lookback=10_000, as_of=now, source="request", forecaster=fc)
                for s in request_series(parsed[i % WINDOWS])]

    def pandas_inputs(i: int, fc: Forecaster) -> list[dict[str, Any]]:
        with mock.patch.object(regimelab.inference, "last_inputs", pandas_last_inputs):
            return path(i, fc)

    with threadpool_limits(1):
        for i in range(WINDOWS):  # the same forecasts, to the bit, either way
            assert path(i, forecaster) == pandas_inputs(i, forecaster)
        out = {"family": forecaster.labeller["family"],
               "models": {name: task.model for name, task in forecaster.tasks.items()},
               "chain_only": timed(lambda i: path(i, None), n),
               "learned": timed(lambda i: path(i, forecaster), n),
               "learned_pandas_inputs": timed(lambda i: pandas_inputs(i, forecaster), n),
               "before_trees_pandas_inputs": timed(lambda i: pandas_inputs(i, trees), n)}
    return out


def with_vol_models(parsed: list, *, n: int) -> dict[str, Any] | None:
    """The service's path on the forecast-vol stage's regime model, without and with its
    volatility models (None when models/forecast_vol is missing), under the one-thread
    limits the service runs with."""
    from threadpoolctl import threadpool_limits

    folder = ROOT / "models" / "forecast_vol"
    if not folder.is_dir():
        return None
    family = load_vol_models(folder).spec["family"]
    regime = ROOT / "models" / family
    vol = load_vol_models(folder, model_version=model_version(regime))
    model, manifest = load_model(regime), read_manifest(regime)
    now = pd.Timestamp.now(tz="UTC")

    def path(i: int, with_vol: bool) -> list[dict[str, Any]]:
        return [latest_series(model, manifest, s.symbol, s.timestamp, s.columns,
                              lookback=10_000, as_of=now, source="request",
                              vol=vol if with_vol else None)
                for s in request_series(parsed[i % WINDOWS])]

    with threadpool_limits(1):
        answer = path(0, True)[0]["volatility"]
        nulls = sorted(f"{name}_h{entry['horizon']}" for entry in answer
                       for name, value in entry.items() if value is None)
        return {"family": family, "models": vol.columns, "null": nulls,
                "without": timed(lambda i: path(i, False), n),
                "with_vol": timed(lambda i: path(i, True), n)}


def report_vol(parsed: list, *, n: int, bars: int) -> dict[str, Any] | None:
    """:func:`with_vol_models`, printed."""
    vol = with_vol_models(parsed, n=n)
    if vol is not None:
        print(f"{vol['family']} without HTTP, one thread, {bars} bars: without --vol-model p50 "
              f"{vol['without']['p50_ms']:.1f} ms, p99 {vol['without']['p99_ms']:.1f} ms; "
              f"with it p50 {vol['with_vol']['p50_ms']:.1f} ms, p99 "
              f"{vol['with_vol']['p99_ms']:.1f} ms (null: {', '.join(vol['null']) or 'none'})")
    return vol


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--bars", type=int, default=500)
    parser.add_argument("--vol-only", action="store_true",
                        help="only the service's path without and with --vol-model")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    columns = ["timestamp", "symbol", "open", "high", "low", "close", "volume"]
    tail = ingest(str(ROOT / "data/raw/btcusdt_1h.csv.gz")).bars.tail(args.bars + WINDOWS)
    windows = [tail.iloc[i:i + args.bars] for i in range(WINDOWS)]
    payloads = [json.dumps({"bars": [
        {"timestamp": ts.isoformat(), "open": o, "high": h, "low": lo, "close": c,
         "volume": v, "symbol": s} for ts, s, o, h, lo, c, v in w[columns].itertuples(
            index=False)]}).encode() for w in windows]
    parsed = [REQUEST.validate_json(p)["bars"] for p in payloads]
    raw = [w.assign(_file="request").reset_index(drop=True) for w in windows]
    report: dict[str, Any] = {"bars": args.bars, "payload_bytes": len(payloads[0]),
                              "cores": os.cpu_count()}
    if args.vol_only:
        report["volatility"] = report_vol(parsed, n=min(args.requests, 200), bars=args.bars)
        OUT.mkdir(parents=True, exist_ok=True)
        (OUT / "bench_serve_vol.json").write_text(json.dumps(report, indent=2) + "\n")
        return
    for name in ("hmm", "dssm"):
        folder = ROOT / "models" / name
        entry = without_http(load_model(folder), read_manifest(folder), parsed, raw,
                             windows[0], n=min(args.requests, 200))
        OUT.mkdir(parents=True, exist_ok=True)
        (OUT / "bench_serve.db").unlink(missing_ok=True)
        servers = {"served": start(folder, f"sqlite:///{OUT / 'bench_serve.db'}"),
                   "served_no_store": start(folder, None)}
        try:
            entry.update(serve_latency({label: port for label, (_, port) in servers.items()},
                                       payloads, requests=args.requests,
                                       seconds=args.seconds))
        finally:
            for server, _ in servers.values():
                server.terminate()
                server.wait(timeout=30)
        report[name] = entry
        s, lib, pd_path = entry["served"], entry["library"], entry["pandas_path"]
        print(f"{name}: {s['n']} requests of {args.bars} bars, store on: p50 "
              f"{s['p50_ms']:.1f} ms, p99 {s['p99_ms']:.1f} ms (target p99 <= 20 ms); store "
              f"off: p50 {entry['served_no_store']['p50_ms']:.1f} ms, p99 "
              f"{entry['served_no_store']['p99_ms']:.1f} ms")
        print(f"    without HTTP: the service's path p50 {lib['p50_ms']:.1f} ms, p99 "
              f"{lib['p99_ms']:.1f} ms; the pandas path p50 {pd_path['p50_ms']:.1f} ms "
              f"({pd_path['p50_ms'] / lib['p50_ms']:.1f}x)")
        if "context_pass" in entry:
            c = entry["context_pass"]
            print(f"    context pass over {c['bars']} bars: compiled "
                  f"{c['compiled']['p50_ms']:.2f} ms, numpy loop {c['numpy']['p50_ms']:.1f} ms "
                  f"({c['numpy']['p50_ms'] / c['compiled']['p50_ms']:.0f}x)")
    forecasts = with_forecaster(parsed, n=min(args.requests, 200))
    if forecasts is not None:
        report["forecast"] = forecasts
        print(f"{forecasts['family']} without HTTP, one thread: chain forecasts only p50 "
              f"{forecasts['chain_only']['p50_ms']:.1f} ms, p99 "
              f"{forecasts['chain_only']['p99_ms']:.1f} ms")
        for key, label in (("learned", "headline learned models, array inputs"),
                           ("learned_pandas_inputs", "the same, pandas inputs"),
                           ("before_trees_pandas_inputs", "before: best trees, pandas inputs")):
            print(f"    {label}: p50 {forecasts[key]['p50_ms']:.1f} ms, p99 "
                  f"{forecasts[key]['p99_ms']:.1f} ms (target p99 <= 20 ms)")
    volatility = report_vol(parsed, n=min(args.requests, 200), bars=args.bars)
    if volatility is not None:
        report["volatility"] = volatility
    (OUT / "bench_serve.db").unlink(missing_ok=True)
    (OUT / "bench_serve.json").write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
