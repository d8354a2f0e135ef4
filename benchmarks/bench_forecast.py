"""The forecast stages' time on the default data: ``forecast`` (tuning included), ``forecast-vol``.

Each stage's command from dvc.yaml runs as a subprocess on the pipeline's own
inputs (run ``dvc repro forecast forecast-vol`` first: the scaled splits, the
folds, the clean bars and the family models must exist), with its outputs and a
**fresh** Optuna study under benchmarks/out/forecast/, so every run tunes from
scratch as on a fresh clone. The study kept by the first run is then reused by
one more run of the forecast stage (``resumed``): Optuna finds every trial done
and only the final fits and the scoring run. Wall time and the CPU time of the
child processes (``resource.getrusage``) are reported; the machine is shared,
so the CPU time is the steadier figure. Each run's metrics are compared with
the pipeline's (``metrics/forecast.json``, ``metrics/forecast_vol.json``): a
benchmark run that gives other answers says so.

Usage::

    .venv/bin/python benchmarks/bench_forecast.py             # about 4 minutes on 2 cores
    .venv/bin/python benchmarks/bench_forecast.py --runs 3    # medians of 3 fresh runs
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "out" / "forecast"


def forecast_cmd(out: Path, family: str) -> list[str]:
    return [sys.executable, "stages/forecast.py", "--scaled", "data/scaled",
            "--spec", "data/features/spec.json", "--bars", "data/clean/bars.parquet",
            "--folds", "data/split/folds.json", "--model", f"models/{family}",
            "--labels", str(out / "labels.parquet"), "--models-out", str(out / "models"),
            "--study-dir", str(out / "study"), "--metrics", str(out / "forecast.json"),
            "--plots", str(out / "plots")]


def vol_cmd(out: Path) -> list[str]:
    return [sys.executable, "stages/forecast_vol.py", "--bars", "data/clean/bars.parquet",
            "--scaled", "data/scaled", "--spec", "data/features/spec.json",
            "--models", "models", "--models-out", str(out / "vol_models"),
            "--metrics", str(out / "forecast_vol.json"),
            "--plots", str(out / "plots_vol")]


def timed(cmd: list[str]) -> dict[str, float]:
    """Wall and child-CPU seconds of one command run in the project root."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall_s": wall, "cpu_s": cpu}


def same_metrics(produced: Path, pipeline: Path) -> bool:
    return pipeline.is_file() and produced.read_bytes() == pipeline.read_bytes()


def family() -> str:
    import yaml

    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    return str(params["forecast"]["family"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=1, help="fresh runs of each stage")
    args = parser.parse_args()
    fam = family()
    rows: dict[str, list[dict[str, float]]] = {"forecast": [], "forecast-vol": []}
    equal: dict[str, bool] = {}
    resumed: dict[str, float] = {}
    for i in range(args.runs):
        out = OUT / f"run{i}"
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        rows["forecast"].append(timed(forecast_cmd(out, fam)))
        rows["forecast-vol"].append(timed(vol_cmd(out)))
        equal[f"forecast run {i}"] = same_metrics(out / "forecast.json",
                                                  ROOT / "metrics" / "forecast.json")
        equal[f"forecast-vol run {i}"] = same_metrics(out / "forecast_vol.json",
                                                      ROOT / "metrics" / "forecast_vol.json")
        if i == 0:
            resumed = timed(forecast_cmd(out, fam))
            equal["forecast resumed"] = same_metrics(out / "forecast.json",
                                                     ROOT / "metrics" / "forecast.json")
    report = {"family": fam, "runs": args.runs, "resumed": resumed, "same_metrics": equal,
              "median": {stage: {key: statistics.median(r[key] for r in runs)
                                 for key in ("wall_s", "cpu_s")}
                         for stage, runs in rows.items()},
              "each": rows}
    for stage, median in report["median"].items():
        print(f"{stage}: wall {median['wall_s']:.1f} s, CPU {median['cpu_s']:.1f} s "
              f"(median of {args.runs} fresh run(s))")
    print(f"forecast, study resumed: wall {resumed['wall_s']:.1f} s, CPU {resumed['cpu_s']:.1f} s")
    total = sum(m["wall_s"] for m in report["median"].values())
    print(f"both stages: wall {total:.1f} s (target: the forecast stage within 600 s)")
    for name, same in equal.items():
        print(f"{name}: metrics {'equal to' if same else 'DIFFER from'} the pipeline's")
    (OUT / "bench_forecast.json").write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
