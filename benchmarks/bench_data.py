"""Time the data stages ingest -> featurize -> split -> scale as the DVC stages run them.

Each pipeline runs in a fresh interpreter (this script re-invoked with
``--child``), so its peak RSS is its own; the child prints one JSON line on
stdout. A child calls the same library functions with the same arguments as
``stages/{ingest,featurize,split,scale}.py``, reads each stage's input from the
Parquet/JSON the previous stage wrote, and writes its outputs with
``regimelab.io`` into ``benchmarks/out/<run>/``.

Runs
----
btc          data/raw/btcusdt_1h.csv.gz, params.yaml as it is
btc-v2-3tf   the same bars, features.set=v2 and timeframes=[1h, 4h, 1d]
panel        a synthetic 20-symbol x 8-year hourly panel (one CSV.gz with a
             symbol column, generated once into benchmarks/out/, not timed),
             params.yaml as it is (v1 at 1h)

Then, on the bars each ``btc``/``panel`` run ingested, regimelab's
``build_features`` is timed against a plain pandas version of the v1 features
(``groupby([symbol, segment]).rolling(w)``), and the two tables are compared.

Usage::

    .venv/bin/python benchmarks/bench_data.py            # full run (~2-3 min on 2 cores)
    .venv/bin/python benchmarks/bench_data.py --quick    # 4-symbol panel, one repeat
    .venv/bin/python benchmarks/bench_data.py --profile panel   # cProfile each stage of one run
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import hashlib
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

# Only the standard library at module level: a child times its own imports.

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "out"
PARAMS = "params.yaml"  # children run with ROOT as the working directory, like dvc
STAGES = ("ingest", "featurize", "split", "scale")

PANEL_FULL = {"n_symbols": 20, "n_bars": 70080, "n_gaps": 30, "random_state": 0}
PANEL_QUICK = {"n_symbols": 4, "n_bars": 70080, "n_gaps": 30, "random_state": 0}

RUNS: dict[str, dict[str, Any]] = {
    "btc": {"input": "default", "features": {}},
    "btc-v2-3tf": {"input": "default", "features": {"set": "v2",
                                                   "timeframes": ["1h", "4h", "1d"]}},
    "panel": {"input": "panel", "features": {}},
}
COMPARE_RUNS = ("btc", "panel")

TARGET_BTC_S = 10.0
TARGET_PANEL_S = 60.0
TARGET_PANEL_RSS_BYTES = 4e9
RTOL = 1e-9
# Rolling sums in pandas are running sums, regimelab's are exact windows: the last
# bits differ, which rtol alone flags where a feature crosses zero (log close/VWAP).
ATOL = 1e-12

PACKAGES = ("pandas", "numpy", "pyarrow", "scikit-learn", "regimelab")


# --------------------------------------------------------------------------- child side

class Clock:
    """Wall time per stage and per part of a stage (read / compute / write)."""

    def __init__(self, profile_dir: Path | None = None) -> None:
        self.stages: dict[str, dict[str, float]] = {}
        self.profile_dir = profile_dir

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        profiler = None
        if self.profile_dir is not None:
            import cProfile

            profiler = cProfile.Profile()
            profiler.enable()
        start = time.perf_counter()
        try:
            yield
        finally:
            self.stages.setdefault(name, {})["total"] = time.perf_counter() - start
            if profiler is not None:
                profiler.disable()
                _dump_profile(profiler, self.profile_dir / f"profile_{name}.txt")

    @contextlib.contextmanager
    def part(self, stage: str, part: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            parts = self.stages.setdefault(stage, {})
            parts[part] = parts.get(part, 0.0) + time.perf_counter() - start


def _dump_profile(profiler: Any, path: Path) -> None:
    import io
    import pstats

    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.StringIO()
    stats = pstats.Stats(profiler, stream=buf)
    stats.sort_stats("cumulative").print_stats(30)
    stats.sort_stats("tottime").print_stats(20)
    path.write_text(buf.getvalue(), encoding="utf-8")


def _timed_imports() -> dict[str, float]:
    """Import what the four stages import, timing each library as it is first loaded."""
    out: dict[str, float] = {}
    start = time.perf_counter()
    t = start
    for label, module in (("numpy", "numpy"), ("pandas", "pandas"),
                          ("pyarrow", "pyarrow.parquet"), ("sklearn", "sklearn.preprocessing"),
                          ("regimelab", "regimelab.data"), ("regimelab", "regimelab.features"),
                          ("regimelab", "regimelab.split"), ("regimelab", "regimelab.scaling"),
                          ("regimelab", "regimelab.io"), ("regimelab", "regimelab.params")):
        __import__(module)
        now = time.perf_counter()
        out[label] = out.get(label, 0.0) + now - t
        t = now
    out["total"] = time.perf_counter() - start
    return out


def _peak_rss_bytes() -> int:
    # Linux reports ru_maxrss in KiB (macOS in bytes).
    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def child_pipeline(run: str, panel: str | None, profile: bool) -> dict[str, Any]:
    """ingest -> featurize -> split -> scale, as stages/*.py do them."""
    imports = _timed_imports()
    import dataclasses

    from regimelab.data import ingest
    from regimelab.features import build_features
    from regimelab.io import read_json, read_parquet, write_csv, write_json, write_parquet
    from regimelab.params import load_section, parse_timeframe
    from regimelab.scaling import fit_scaler
    from regimelab.split import SPLITS, split_features

    cfg = RUNS[run]
    out = OUT / run
    paths = {
        "bars": out / "data/clean/bars.parquet",
        "gaps": out / "data/clean/gaps.csv",
        "ingest_metrics": out / "metrics/ingest.json",
        "features": out / "data/features/features.parquet",
        "spec": out / "data/features/spec.json",
        "featurize_metrics": out / "metrics/featurize.json",
        "split": out / "data/split",
        "split_metrics": out / "metrics/split.json",
        "scaled": out / "data/scaled",
    }
    clock = Clock(out / "profile" if profile else None)

    # stages/ingest.py
    with clock.stage("ingest"):
        with clock.part("ingest", "load"):  # ingest() reads the raw files itself
            params = load_section("ingest", PARAMS)
            if cfg["input"] == "panel":
                params = dataclasses.replace(params, path=panel)
        with clock.part("ingest", "call"):
            result = ingest(params.path, symbol=params.symbol, freq=params.freq,
                            max_invalid_fraction=params.max_invalid_fraction)
        with clock.part("ingest", "write"):
            write_parquet(result.bars, paths["bars"])
            write_csv(result.gaps, paths["gaps"])
            write_json(result.report, paths["ingest_metrics"])
        rows_raw = result.report["rows_in"]
        del result

    # stages/featurize.py
    with clock.stage("featurize"):
        with clock.part("featurize", "load"):
            fparams = load_section("features", PARAMS)
            overrides = {k: tuple(v) if isinstance(v, list) else v
                         for k, v in cfg["features"].items()}
            fparams = dataclasses.replace(fparams, **overrides)
            bars = read_parquet(paths["bars"])
        with clock.part("featurize", "call"):
            fresult = build_features(bars, params=fparams)
        with clock.part("featurize", "write"):
            write_parquet(fresult.table, paths["features"])
            write_json(fresult.spec, paths["spec"])
            table = fresult.table
            write_json({
                "rows_in": fresult.spec["rows_in"],
                "rows_out": fresult.spec["rows_out"],
                "features": len(fresult.spec["columns"]),
                "segments": int(table["segment"].nunique()),
                "lookback_bars": fresult.spec["lookback_bars"],
            }, paths["featurize_metrics"])
        n_bars, n_rows, n_features = len(bars), len(table), len(fresult.spec["columns"])
        n_segments = int(table["segment"].nunique())
        feature_set = f"{fparams.set} @ {','.join(fparams.timeframes)}"
        del bars, fresult, table

    # stages/split.py
    with clock.stage("split"):
        with clock.part("split", "load"):
            sparams = load_section("split", PARAMS)
            spec = read_json(paths["spec"])
            features = read_parquet(paths["features"])
        with clock.part("split", "call"):
            sresult = split_features(features, params=sparams,
                                     lookback_bars=spec["lookback_bars"],
                                     base=parse_timeframe(spec["base_timeframe"]))
        with clock.part("split", "write"):
            for name, frame in sresult.frames.items():
                write_parquet(frame, paths["split"] / f"{name}.parquet")
            write_json(sresult.folds, paths["split"] / "folds.json")
            write_json(sresult.report, paths["split_metrics"])
        del features, sresult

    # stages/scale.py
    with clock.stage("scale"):
        with clock.part("scale", "load"):
            cparams = load_section("scale", PARAMS)
            columns = read_json(paths["spec"])["columns"]
            frames = {name: read_parquet(paths["split"] / f"{name}.parquet") for name in SPLITS}
        with clock.part("scale", "call"):
            scaler = fit_scaler(frames["train"], columns=columns, method=cparams.method,
                                clip=cparams.clip)
        with clock.part("scale", "write"):
            # The stage transforms inside its write loop; counted as write here too.
            for name, frame in frames.items():
                write_parquet(scaler.transform(frame), paths["scaled"] / f"{name}.parquet")
            write_json(scaler.to_dict(), paths["scaled"] / "scaler.json")

    return {
        "run": run,
        "imports": imports,
        "stages": clock.stages,
        "total": sum(clock.stages[s]["total"] for s in STAGES),
        "peak_rss": _peak_rss_bytes(),
        "rows_raw": rows_raw,
        "bars": n_bars,
        "rows": n_rows,
        "features": n_features,
        "segments": n_segments,
        "feature_set": feature_set,
    }


def plain_pandas_v1(bars: Any, *, window: int, max_gap: int, freq: Any) -> Any:
    """The v1 features the way a researcher would write them with pandas.

    Per symbol and per gap-free segment, ``groupby(...).rolling(w)`` with pandas'
    own mean / std / sum; the rows without a full window are dropped.
    """
    import numpy as np

    w = window
    df = bars[["timestamp", "symbol", "open", "high", "low", "close", "volume"]].copy()
    step = df.groupby("symbol")["timestamp"].diff()
    df["segment"] = (step.isna() | (step > (max_gap + 1) * freq)).cumsum() - 1
    keys = ["symbol", "segment"]

    df["r"] = np.log(df["close"] / df.groupby(keys)["close"].shift(1))
    df["log_volume"] = np.log1p(df["volume"])
    df["hl2"] = np.log(df["high"] / df["low"]) ** 2
    df["tp"] = (df["high"] + df["low"] + df["close"]) / 3.0
    df["tpv"] = df["tp"] * df["volume"]

    g = df.groupby(keys, sort=False)
    mean = g[["hl2", "r", "volume", "tp"]].rolling(w).mean().droplevel(keys)
    std = g["r"].rolling(w).std().droplevel(keys)
    total = g[["tpv", "volume"]].rolling(w).sum().droplevel(keys)
    prev_log_volume = g["log_volume"].shift(1)

    out = df[["timestamp", "symbol", "segment"]].copy()
    out["log_return_1h"] = df["r"]
    out["log_volume_change_1h"] = df["log_volume"] - prev_log_volume
    out[f"parkinson_{w}_1h"] = np.sqrt(mean["hl2"] / (4.0 * np.log(2.0)))
    out[f"return_zscore_{w}_1h"] = ((df["r"] - mean["r"]) / std).mask(std == 0, 0.0)
    out[f"relative_volume_{w}_1h"] = (df["volume"] / mean["volume"]).mask(mean["volume"] == 0,
                                                                          1.0)
    vwap = (total["tpv"] / total["volume"]).mask(total["volume"] == 0, mean["tp"])
    out[f"log_close_vwap_{w}_1h"] = np.log(df["close"] / vwap)
    out["hl_range_pct_1h"] = 100.0 * (df["high"] - df["low"]) / df["close"]
    out["close_open_pct_1h"] = 100.0 * (df["close"] - df["open"]) / df["open"]
    return out.dropna().reset_index(drop=True)


def child_compare(run: str, repeat: int) -> dict[str, Any]:
    """regimelab's build_features against plain pandas on the bars ``run`` ingested."""
    import dataclasses

    import numpy as np

    from regimelab.features import build_features
    from regimelab.features.catalog import resolve_max_gap
    from regimelab.io import read_parquet
    from regimelab.params import load_section

    params = dataclasses.replace(load_section("features", PARAMS), set="v1", timeframes=("1h",))
    bars = read_parquet(OUT / run / "data/clean/bars.parquet")
    freq = bars["timestamp"].diff().mode().iloc[0]
    t_lib: list[float] = []
    t_ref: list[float] = []
    for _ in range(repeat):
        start = time.perf_counter()
        lib = build_features(bars, params=params).table
        t_lib.append(time.perf_counter() - start)
        start = time.perf_counter()
        ref = plain_pandas_v1(bars, window=params.window, max_gap=resolve_max_gap(params),
                              freq=freq)
        t_ref.append(time.perf_counter() - start)

    columns = [c for c in lib.columns if c not in ("timestamp", "symbol", "segment", "regime")]
    if sorted(columns) != sorted(c for c in ref.columns if c not in ("timestamp", "symbol",
                                                                       "segment")):
        raise SystemExit(f"compare {run}: columns differ: {columns} vs {list(ref.columns)}")
    both = lib.merge(ref, on=["symbol", "timestamp"], how="inner", suffixes=("", "_pd"))
    per_column = {}
    for c in columns:
        a = both[c].to_numpy()
        b = both[f"{c}_pd"].to_numpy()
        diff = np.abs(a - b)
        with np.errstate(divide="ignore", invalid="ignore"):
            rel = np.where(b != 0, diff / np.abs(b), np.where(diff == 0, 0.0, np.inf))
        per_column[c] = {
            "max_abs_diff": float(diff.max()),
            "max_rel_diff": float(rel.max()),
            "allclose_rtol": bool(np.allclose(a, b, rtol=RTOL, atol=0.0)),
            "allclose": bool(np.allclose(a, b, rtol=RTOL, atol=ATOL)),
        }
    return {
        "run": run,
        "rows_regimelab": len(lib),
        "rows_pandas": len(ref),
        "rows_common": len(both),
        "time_regimelab": min(t_lib),
        "time_pandas": min(t_ref),
        "times_regimelab": t_lib,
        "times_pandas": t_ref,
        # Above 1: regimelab is faster than plain pandas.
        "speedup": min(t_ref) / min(t_lib),
        "columns": per_column,
        "max_abs_diff": max(v["max_abs_diff"] for v in per_column.values()),
        "allclose": all(v["allclose"] for v in per_column.values()),
        "allclose_rtol": all(v["allclose_rtol"] for v in per_column.values()),
        "keys_equal": bool(len(lib) == len(ref) == len(both)),
        "peak_rss": _peak_rss_bytes(),
    }


def child_generate(path: str, cfg: dict[str, Any]) -> dict[str, Any]:
    from regimelab.synth import make_panel, write_market

    start = time.perf_counter()
    panel = make_panel(cfg["n_symbols"], cfg["n_bars"], n_gaps=cfg["n_gaps"],
                       random_state=cfg["random_state"])
    write_market(panel, path)
    return {"rows": len(panel), "seconds": time.perf_counter() - start,
            "bytes": os.path.getsize(path)}


# --------------------------------------------------------------------------- parent side

def _spawn(args: list[str]) -> tuple[dict[str, Any], float]:
    """Run this script as a child; return its JSON and the process's wall time."""
    cmd = [sys.executable, str(Path(__file__).resolve()), *args]
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr)
        raise SystemExit(f"child {' '.join(args)} failed with exit status {proc.returncode}")
    return json.loads(proc.stdout.strip().splitlines()[-1]), wall


def _synth_key(cfg: dict[str, Any]) -> str:
    """What the cached panel depends on: its arguments and the generator's source."""
    digest = hashlib.sha256(json.dumps(cfg, sort_keys=True).encode())
    digest.update((ROOT / "src/regimelab/synth.py").read_bytes())
    digest.update((ROOT / "src/regimelab/io.py").read_bytes())
    return digest.hexdigest()[:16]


def ensure_panel(cfg: dict[str, Any]) -> tuple[Path, dict[str, Any]]:
    """The panel CSV.gz in benchmarks/out/, generated once per generator version."""
    name = f"panel_{cfg['n_symbols']}x{cfg['n_bars']}_gaps{cfg['n_gaps']}_seed{cfg['random_state']}"
    path = OUT / f"{name}.csv.gz"
    meta_path = OUT / f"{name}.json"
    key = _synth_key(cfg)
    if path.exists() and meta_path.exists():
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if meta.get("key") == key:
            meta["cached"] = True
            return path, meta
    print(f"generating {path.relative_to(ROOT)} (not timed) ...", flush=True)
    meta, _ = _spawn(["--child", "generate", "--panel", str(path),
                      "--panel-config", json.dumps(cfg)])
    meta["key"] = key
    OUT.mkdir(parents=True, exist_ok=True)
    meta_path.write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    meta["cached"] = False
    return path, meta


def _startup_costs() -> dict[str, float]:
    """Interpreter start plus module imports of each stage script (``--help`` exits after)."""
    out = {}
    for stage in STAGES:
        start = time.perf_counter()
        subprocess.run([sys.executable, f"stages/{stage}.py", "--help"], cwd=ROOT,
                       capture_output=True, check=True)
        out[stage] = time.perf_counter() - start
    return out


def _versions() -> dict[str, str]:
    out = {}
    for pkg in PACKAGES:
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def _machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"cpu": cpu, "cores": cores, "python": platform.python_version(),
            "platform": platform.platform(), "packages": _versions()}


def _median_run(samples: list[dict[str, Any]], walls: list[float]) -> dict[str, Any]:
    """Per-stage and per-part medians over repeats; the largest peak RSS."""
    med = {
        "stages": {s: {p: statistics.median(x["stages"][s][p] for x in samples)
                       for p in samples[0]["stages"][s]} for s in STAGES},
        "imports": {k: statistics.median(x["imports"][k] for x in samples)
                    for k in samples[0]["imports"]},
        "total": statistics.median(x["total"] for x in samples),
        "total_min": min(x["total"] for x in samples),
        "total_max": max(x["total"] for x in samples),
        "process_wall": statistics.median(walls),
        "peak_rss": max(x["peak_rss"] for x in samples),
        "repeats": len(samples),
    }
    for key in ("rows_raw", "bars", "rows", "features", "segments", "feature_set"):
        med[key] = samples[0][key]
    return med


def _mib(n: float) -> str:
    return f"{n / 2**20:,.0f}"


def print_report(results: dict[str, Any]) -> None:
    runs = results["runs"]
    names = list(runs)
    m = results["machine"]
    pk = m["packages"]
    print()
    print(f"regimelab data benchmark, {results['date']}, {m['cores']} cores ({m['cpu']}), "
          f"Python {m['python']}, pandas {pk['pandas']}, numpy {pk['numpy']}, "
          f"pyarrow {pk['pyarrow']}, scikit-learn {pk['scikit-learn']}")
    print(f"wall seconds, median of {runs[names[0]]['repeats']} fresh process(es) per run; "
          "peak RSS = max ru_maxrss of the run's process")
    print()
    width = 17
    head = f"{'':<27}" + "".join(f"{n:>{width}}" for n in names)
    print(head)
    print("-" * len(head))

    def row(label: str, values: list[str]) -> None:
        print(f"{label:<27}" + "".join(f"{v:>{width}}" for v in values))

    row("feature set", [runs[n]["feature_set"].replace(" @ ", "@") for n in names])
    row("raw rows", [f"{runs[n]['rows_raw']:,}" for n in names])
    row("feature rows x columns", [f"{runs[n]['rows'] // 1000:,}k x{runs[n]['features']}"
                                   for n in names])
    row("import libraries (s)", [f"{runs[n]['imports']['total']:.2f}" for n in names])
    for stage in STAGES:
        row(f"{stage} (s)", [f"{runs[n]['stages'][stage]['total']:.2f}" for n in names])
        row("  load / call / write", [
            "/".join(f"{runs[n]['stages'][stage][p]:.2f}" for p in ("load", "call", "write"))
            for n in names])
    row("total, 4 stages (s)", [f"{runs[n]['total']:.2f}" for n in names])
    row("  min..max over repeats", [f"{runs[n]['total_min']:.1f}..{runs[n]['total_max']:.1f}"
                                    for n in names])
    row("process wall incl. imports", [f"{runs[n]['process_wall']:.2f}" for n in names])
    row("peak RSS (MiB)", [_mib(runs[n]["peak_rss"]) for n in names])

    print()
    print("featurize compute, v1 at 1h: regimelab build_features vs plain pandas "
          f"(same bars, same process, best of {results['compare_repeats']})")
    print(f"{'':<8}{'regimelab s':>12}{'pandas s':>10}{'pandas/regimelab':>18}"
          f"{'rows regimelab/pandas/both':>30}{'max |diff|':>12}")
    for name, c in results["compare"].items():
        rows = f"{c['rows_regimelab']:,}/{c['rows_pandas']:,}/{c['rows_common']:,}"
        print(f"{name:<8}{c['time_regimelab']:>12.2f}{c['time_pandas']:>10.2f}"
              f"{c['speedup']:>17.2f}x{rows:>30}{c['max_abs_diff']:>12.1e}")
    print("  (pandas/regimelab is the time ratio: above 1 regimelab is faster, below 1 "
          "plain pandas is)")
    for name, c in results["compare"].items():
        verdict = "agree" if c["allclose"] and c["keys_equal"] else "DIFFER"
        print(f"  {name}: {verdict} at rtol {RTOL:g}, atol {ATOL:g} on the rows both have"
              + ("" if c["keys_equal"] else " (the row sets differ)"))
        for col, v in c["columns"].items():
            if not v["allclose_rtol"]:
                print(f"    {col}: fails rtol {RTOL:g} with atol 0: max abs diff "
                      f"{v['max_abs_diff']:.1e}, max rel diff {v['max_rel_diff']:.1e} "
                      "(values near zero)")

    s = results["startup"]
    dvc_like = runs["btc"]["total"] + sum(s.values())
    print()
    print("stage process start-up (python stages/X.py --help: interpreter + imports): "
          + ", ".join(f"{k} {v:.2f}s" for k, v in s.items()))
    print(f"btc as dvc repro runs it (4 processes): about {dvc_like:.1f}s "
          f"= {runs['btc']['total']:.1f}s of stages + {sum(s.values()):.1f}s of start-up")

    print()
    print("targets")
    for t in results["targets"]:
        print(f"  {t['status']:<5} {t['name']}: {t['value']} (target {t['target']})")
    if results["quick"]:
        print("  (--quick: the panel is smaller than the target's, so its targets are n/a)")


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    runs = results["runs"]
    quick = results["quick"]

    def check(name: str, value: float, limit: float, fmt: str, applies: bool = True
              ) -> dict[str, Any]:
        status = "n/a" if not applies else ("PASS" if value <= limit else "MISS")
        return {"name": name, "value": fmt.format(value), "target": "<= " + fmt.format(limit),
                "status": status}

    return [
        check("btc default params, ingest..scale wall", runs["btc"]["total"], TARGET_BTC_S,
              "{:.1f} s"),
        check("20x8y panel, ingest..scale wall", runs["panel"]["total"], TARGET_PANEL_S,
              "{:.1f} s", applies=not quick),
        check("20x8y panel, peak RSS", runs["panel"]["peak_rss"] / 1e9,
              TARGET_PANEL_RSS_BYTES / 1e9, "{:.2f} GB", applies=not quick),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="4-symbol panel and one repeat: a smoke run")
    parser.add_argument("--repeat", type=int, default=None,
                        help="fresh processes per run (default 3, 1 with --quick)")
    parser.add_argument("--profile", choices=sorted(RUNS), default=None,
                        help="run only this pipeline once under cProfile and print where "
                             "the time goes (times are inflated by the profiler)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--panel", help=argparse.SUPPRESS)
    parser.add_argument("--panel-config", help=argparse.SUPPRESS)
    parser.add_argument("--child-profile", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        kind, _, name = args.child.partition(":")
        if kind == "pipeline":
            result = child_pipeline(name, args.panel, args.child_profile)
        elif kind == "compare":
            result = child_compare(name, args.repeat or 1)
        elif kind == "generate":
            result = child_generate(args.panel, json.loads(args.panel_config))
        else:
            raise SystemExit(f"unknown child {args.child!r}")
        print(json.dumps(result))
        return 0

    started = time.perf_counter()
    repeat = args.repeat or (1 if args.quick else 3)
    panel_cfg = PANEL_QUICK if args.quick else PANEL_FULL
    panel_path, panel_meta = ensure_panel(panel_cfg)

    if args.profile:
        _spawn(["--child", f"pipeline:{args.profile}", "--panel", str(panel_path),
                "--child-profile"])
        folder = OUT / args.profile / "profile"
        for stage in STAGES:
            path = folder / f"profile_{stage}.txt"
            print(f"==== {path.relative_to(ROOT)}")
            print(path.read_text(encoding="utf-8").rstrip())
        return 0

    results: dict[str, Any] = {
        "date": dt.date.today().isoformat(),
        "quick": args.quick,
        "machine": _machine(),
        "panel": {**panel_cfg, **panel_meta, "path": str(panel_path.relative_to(ROOT))},
        "runs": {},
        "compare": {},
        "compare_repeats": repeat,
    }
    for name in RUNS:
        samples, walls = [], []
        for i in range(repeat):
            print(f"run {name} ({i + 1}/{repeat}) ...", flush=True)
            sample, wall = _spawn(["--child", f"pipeline:{name}", "--panel", str(panel_path)])
            samples.append(sample)
            walls.append(wall)
        results["runs"][name] = _median_run(samples, walls)
    for name in COMPARE_RUNS:
        print(f"compare {name} with plain pandas ...", flush=True)
        results["compare"][name], _ = _spawn(["--child", f"compare:{name}",
                                              "--repeat", str(repeat)])
    results["startup"] = _startup_costs()
    results["targets"] = targets(results)
    results["bench_seconds"] = time.perf_counter() - started

    print_report(results)
    report_path = OUT / ("bench_data_quick.json" if args.quick else "bench_data.json")
    report_path.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(f"\nbenchmark took {results['bench_seconds']:.0f} s; figures in "
          f"{report_path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
