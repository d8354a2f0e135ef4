"""Latency of `regimelab serve`: POST /regime with 500 bars, on loopback, both models.

The trained models of the pipeline (`models/hmm`, `models/dssm`; run `dvc repro`
first) are served in this process by uvicorn on an ephemeral 127.0.0.1 port.
One client sends requests one after another: a bounded number (`--requests`,
default 300) within a bounded time (`--seconds`, default 60), never anywhere but
loopback. The plain-library way is the same work without HTTP: the bars
validated, the features rebuilt, the model's filter run
(`regimelab.inference.latest`), timed the same way in the same run.

Usage::

    .venv/bin/python benchmarks/bench_serve.py        # about a minute on 2 cores
"""

from __future__ import annotations

import argparse
import json
import logging
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import uvicorn

from regimelab.data import ingest
from regimelab.inference import latest
from regimelab.models import load_model, read_manifest
from regimelab.serve import Bar, create_app, request_bars

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "out"


def start(folder: Path) -> tuple[uvicorn.Server, threading.Thread, str]:
    server = uvicorn.Server(uvicorn.Config(create_app(folder, store=None), host="127.0.0.1",
                                           port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    return server, thread, f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"


def percentiles(seconds: list[float]) -> dict[str, float]:
    ms = np.asarray(seconds) * 1e3
    return {"n": len(ms), "p50_ms": float(np.percentile(ms, 50)),
            "p99_ms": float(np.percentile(ms, 99)), "mean_ms": float(ms.mean())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--bars", type=int, default=500)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    bars = ingest(str(ROOT / "data/raw/btcusdt_1h.csv.gz")).bars.tail(args.bars)
    payload = json.dumps({"bars": [
        {"timestamp": ts.isoformat(), "open": o, "high": h, "low": lo, "close": c, "volume": v,
         "symbol": s} for ts, s, o, h, lo, c, v in bars[
            ["timestamp", "symbol", "open", "high", "low", "close", "volume"]].itertuples(
            index=False)]}).encode()
    report = {"bars": args.bars, "payload_bytes": len(payload)}
    for name in ("hmm", "dssm"):
        folder = ROOT / "models" / name
        model, manifest = load_model(folder), read_manifest(folder)
        parsed = [Bar(**row) for row in json.loads(payload)["bars"]]
        library = []
        for _ in range(min(args.requests, 100)):
            t = time.perf_counter()
            latest(model, request_bars(parsed), manifest, lookback=10_000, source="request")
            library.append(time.perf_counter() - t)
        server, thread, url = start(folder)
        served = []
        deadline = time.monotonic() + args.seconds
        request = urllib.request.Request(f"{url}/regime", data=payload,
                                         headers={"Content-Type": "application/json"})
        while len(served) < args.requests and time.monotonic() < deadline:
            t = time.perf_counter()
            with urllib.request.urlopen(request, timeout=10) as response:
                response.read()
            served.append(time.perf_counter() - t)
        server.should_exit = True
        thread.join(timeout=10)
        report[name] = {"served": percentiles(served), "library": percentiles(library)}
        s, lib = report[name]["served"], report[name]["library"]
        print(f"{name}: {s['n']} requests of {args.bars} bars: p50 {s['p50_ms']:.1f} ms, "
              f"p99 {s['p99_ms']:.1f} ms (target p99 <= 20 ms); the library alone p50 "
              f"{lib['p50_ms']:.1f} ms, p99 {lib['p99_ms']:.1f} ms; HTTP and JSON add "
              f"{s['p50_ms'] - lib['p50_ms']:.1f} ms at the median")
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "bench_serve.json").write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
