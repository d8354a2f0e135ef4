"""The backtest stage's walk-forward: its time per family, and its figures per asset.

For each data set the script does what ingest and featurize do (the library calls,
params.yaml's ``ingest`` and ``features`` sections, the feature timeframe set to
the data's bar interval) and then, for each family on its own, what the backtest
stage does (``run_backtest`` with params.yaml's ``backtest`` section), timing
the call (wall and CPU time: on a shared machine the CPU time is the steadier
figure). Nothing is chosen here: every figure uses params.yaml as it is, and the
scored period is every bar after the first ``backtest.min_train`` (2020 on for
the hourly files).

It prints one line per asset and strategy (Sharpe with its 95% block-bootstrap
interval, the Sharpe difference from buy-and-hold with its interval, maximum
drawdown, turnover), the issue's targets checked against them, and writes
everything to ``benchmarks/out/bench_backtest.json``.

Usage::

    nice .venv/bin/python benchmarks/bench_backtest.py             # BTC, ETH, daily panel
    nice .venv/bin/python benchmarks/bench_backtest.py --data btc --families jump
    nice .venv/bin/python benchmarks/bench_backtest.py --data btc --families dssm --refit 365d
"""

from __future__ import annotations

import argparse
import logging
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from regimelab.backtest.report import run_backtest
from regimelab.backtest.walkforward import settings_for
from regimelab.choice import min_dwell_bars
from regimelab.data.validate import ingest
from regimelab.features import build_features
from regimelab.features.build import base_interval
from regimelab.io import json_text
from regimelab.params import format_timeframe, load_section

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "out"
DATA = {"btc": "data/raw/btcusdt_1h.csv.gz", "eth": "data/raw/ethusdt_1h.csv.gz",
        "daily": "data/raw/binance_spot_top10_1d.csv.gz"}
STRATEGIES = ("risk_onoff", "vol_target", "mapping")


def load(name: str) -> tuple[Any, Any, Any]:
    """Clean bars, feature table and spec of one data set."""
    params = load_section("ingest", ROOT / "params.yaml")
    bars = ingest(str(ROOT / DATA[name]), symbol=None, freq=params.freq,
                  max_invalid_fraction=params.max_invalid_fraction).bars
    features = replace(load_section("features", ROOT / "params.yaml"),
                       timeframes=(format_timeframe(base_interval(bars)),))
    result = build_features(bars, params=features)
    return bars, result.table, result.spec


def line(name: str, row: dict[str, float]) -> str:
    return (f"  {name:24s} Sharpe {row['sharpe']:5.2f} [{row['sharpe_lo']:5.2f}, "
            f"{row['sharpe_hi']:5.2f}]  diff {row['sharpe_diff']:+5.2f} "
            f"[{row['sharpe_diff_lo']:+5.2f}, {row['sharpe_diff_hi']:+5.2f}]  "
            f"maxDD {100 * row['max_drawdown']:6.1f}%  turnover {row['turnover']:6.1f}/y  "
            f"DSR {row['dsr']:.2f}")


def targets(block: dict[str, Any], family: str) -> dict[str, bool]:
    """The issue's BTC target: a rule with maxDD <= 0.6 x buy-and-hold's and Sharpe >=
    buy-and-hold's, better than the volatility threshold on one of the two."""
    hold, base = block["buy_and_hold"], block["vol_threshold"]
    out = {}
    for rule in ("risk_onoff", "vol_target"):
        r = block[family][rule]
        out[rule] = (r["max_drawdown"] >= 0.6 * hold["max_drawdown"]
                     and r["sharpe"] >= hold["sharpe"]
                     and (r["sharpe"] > base["sharpe"] or r["max_drawdown"] > base["max_drawdown"]))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", nargs="+", default=list(DATA), choices=list(DATA))
    parser.add_argument("--families", nargs="+", default=None,
                        help="default: backtest.families in params.yaml")
    parser.add_argument("--settings", default=None, choices=["fixed", "past"],
                        help="default: backtest.settings in params.yaml")
    parser.add_argument("--refit", default=None,
                        help="override backtest.refit (e.g. 365d: a coarser cadence for the "
                             "DSSM; the figures then say so)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    p = ROOT / "params.yaml"
    backtest = load_section("backtest", p)
    if args.settings is not None:
        backtest = replace(backtest, settings=args.settings)
    if args.refit is not None:
        backtest = replace(backtest, refit=args.refit)
    select = load_section("select", p)
    families = args.families or list(backtest.families)
    record: dict[str, Any] = {}
    for name in args.data:
        bars, table, spec = load(name)
        record[name] = {}
        for family in families:
            params = replace(backtest, families=(family,))
            start, cpu = time.perf_counter(), time.process_time()
            result = run_backtest(
                table, bars, columns=spec["columns"],
                base_timeframe=base_interval(bars), params=params,
                settings=settings_for(params, None, select=select,
                                      min_dwell=min_dwell_bars(select, base_interval(bars))),
                scale=load_section("scale", p),
                hmm=load_section("hmm", p), jump=load_section("jump", p),
                dssm=load_section("dssm", p), seed=load_section("model", p).seed)
            seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
            m = result.metrics
            refits = sum(b["period"]["refits"] for b in m["symbols"].values())
            print(f"{name} {family}: {len(m['symbols'])} symbol(s), {refits} refits in "
                  f"{seconds:.1f} s wall, {cpu:.1f} s CPU")
            for symbol, block in m["symbols"].items():
                print(f" {symbol} {block['period']['start'][:10]} .. "
                      f"{block['period']['end'][:10]}")
                print(line("buy_and_hold", block["buy_and_hold"]))
                print(line("vol_threshold", block["vol_threshold"]))
                for rule in STRATEGIES:
                    if rule in block[family]:
                        print(line(f"{family} {rule}", block[family][rule]))
                print(f"  name changes between refits: "
                      f"{block[family]['refits']['name_change_rate']:.1%}")
                print(f"  state count from row: {block[family]['refits']['n_states_by_row']}")
                if "jump_penalty_by_row" in block[family]["refits"]:
                    print(f"  jump penalty from row: "
                          f"{block[family]['refits']['jump_penalty_by_row']}")
                if name in ("btc", "eth"):
                    print(f"  target met: {targets(block, family)}")
            if len(m["symbols"]) > 1:
                for strategy, summary in m["panel"].items():
                    print(f"  panel {strategy:28s} median Sharpe diff "
                          f"{summary['median_sharpe_diff']:+.2f}; drawdown improved on "
                          f"{summary['drawdown_improved_share']:.0%} of "
                          f"{summary['n_symbols']}")
            record[name][family] = {"seconds": seconds, "cpu_seconds": cpu, "refits": refits,
                                    "metrics": m}
    OUT.mkdir(parents=True, exist_ok=True)
    suffix = "" if args.refit is None else f"_refit{args.refit}"
    (OUT / f"bench_backtest{suffix}.json").write_text(json_text(record))


if __name__ == "__main__":
    main()
