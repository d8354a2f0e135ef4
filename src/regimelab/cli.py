"""The ``regimelab`` command: trained regimes applied to new bars.

::

    regimelab infer --model models/hmm --input bars.csv [--output regimes.parquet] [--smoothed]
    regimelab now   --model models/dssm --input recent.csv [--lookback 500] [--as-of T] [--json]
                    [--forecast-model models/forecast] [--vol-model models/forecast_vol]
    regimelab forecast --model models/jump --forecast-model models/forecast --input bars.csv
                    [--output forecasts.parquet] [--inputs] [--vol-model models/forecast_vol]
    regimelab forecast --model models/dssm --vol-model models/forecast_vol --input bars.csv
    regimelab drift --model models/hmm --input recent.csv [--output drift.json]
    regimelab serve --model models/hmm [--host 127.0.0.1] [--port 8080] [--workers 1]
                    [--forecast-model models/forecast] [--vol-model models/forecast_vol]
    regimelab history [--model models/hmm] [--symbol BTCUSDT] [--limit 100] [--csv]
    regimelab store upgrade [--store URL]

``python -m regimelab`` is the same command. ``-v`` logs debug lines too, ``-q``
only warnings and errors (``-qq`` errors only), before or after the command's
name; ``--version`` prints the installed version. ``--print-completion bash``
(or ``zsh``, ``tcsh``, ``fish``, ``powershell``) prints a shell completion script,
e.g. in ~/.bashrc: ``eval "$(regimelab --print-completion bash)"``.

``forecast`` writes, per bar, the next-regime probabilities of the forecast stage's
learned models and of the regime model's Markov chain (``p_filter A^h``) at each
horizon, the chance of a switch within h bars, and the model that made each; with
``--vol-model``, each forecast-vol model's realised volatility over the next h bars
(``rv_<model>_h{h}``: the square root of the variance over the h bars, not annualised).
``now`` and ``serve`` add the chain's forecasts, and the learned ones given
``--forecast-model`` (or ``$REGIMELAB_FORECAST_MODEL``); given ``--vol-model`` (or
``$REGIMELAB_VOL_MODEL``), the last bar's volatility forecasts, the same numbers.

Every prediction of infer, now and serve is appended to the prediction store
(``--store URL``; default ``$REGIMELAB_STORE`` or ``sqlite:///predictions.db``;
``--no-store`` to keep none). A new store is created on first use; one made by
an older regimelab is refused until ``regimelab store upgrade`` has brought its
schema up to date (once, after a backup; its rows are kept).

A user's mistake (a missing file, bars the model cannot read) ends with one
``error:`` line and exit status 2, as in the stages. ``drift`` exits 1 when a
threshold is crossed.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import shtab

from regimelab import __version__
from regimelab.data import ingest
from regimelab.drift import Thresholds, drift_report
from regimelab.exceptions import InputDataError
from regimelab.forecast.apply import (
    FORECAST_ENV,
    Forecaster,
    chain_columns,
    forecast_inputs,
    input_runs,
    learned_columns,
    load_forecaster,
)
from regimelab.forecast.vol_apply import VOL_ENV, VolModels, load_vol_models, vol_forecasts
from regimelab.inference import latest, latest_json, observations, regime_names, regimes
from regimelab.io import (
    json_text,
    read_parquet,
    sha256_file,
    write_csv,
    write_json,
    write_parquet,
)
from regimelab.models import load_model, model_version, read_manifest
from regimelab.regimes import RegimeModel
from regimelab.stage import run
from regimelab.store import PredictionStore, store_url, upgrade_store

log = logging.getLogger("regimelab.cli")
#: Bars ``now`` reads by default, and with learned or volatility forecasts: as many as
#: the service reads from a request (``serve_schema.MAX_BARS``; not imported here, so
#: that the CLI starts without pydantic).
NOW_LOOKBACK = 500
FORECAST_LOOKBACK = 10_000


def _bars(path: str) -> pd.DataFrame:
    # Validation as in ingest; new bars are not held to the training data's invalid share.
    return ingest(path, max_invalid_fraction=1.0).bars


def _write(table: pd.DataFrame, output: str | None) -> None:
    if output is None:
        sys.stdout.write(table.to_csv(index=False))
    elif Path(output).suffix == ".parquet":
        write_parquet(table, output)
    elif output.endswith((".csv", ".csv.gz")):
        write_csv(table, output)
    else:
        raise InputDataError(f"--output {output}: expected a .parquet, .csv or .csv.gz name")


def _model(folder: str) -> tuple[dict[str, Any], RegimeModel]:
    """A model folder's manifest and model."""
    manifest = read_manifest(folder)
    model = load_model(folder)
    log.debug("%s: %s model %s, %d states, features %s, trained with regimelab %s", folder,
              manifest["model"], model_version(folder), model.n_states,
              ", ".join(manifest["features"]), manifest["regimelab_version"])
    return manifest, model


def _store(args: argparse.Namespace) -> PredictionStore | None:
    return None if args.no_store else PredictionStore(args.store)


def _record(args: argparse.Namespace, table: pd.DataFrame, source: str) -> None:
    store = _store(args)
    if store is not None:
        n = store.append(table, source=source, model=str(Path(args.model).resolve()),
                         version=model_version(args.model))
        log.info("appended %d predictions to %s", n, store.url)


def cmd_infer(args: argparse.Namespace) -> None:
    manifest, model = _model(args.model)
    table = observations(_bars(args.input), manifest, source=args.input)
    out = regimes(model, table, manifest["features"], smoothed=args.smoothed,
                  names=regime_names(manifest, model.n_states))
    _write(out, args.output)
    _record(args, out.drop(columns="state").rename(columns={"state_filtered": "state"}),
            "infer")
    log.info("%s: %d bars, %d states, model %s", args.input, len(out), model.n_states,
             args.model)


def _as_of(value: str | None) -> pd.Timestamp:
    if value is None:
        return pd.Timestamp.now(tz="UTC")
    try:
        stamp = pd.Timestamp(value)
    except ValueError:
        stamp = pd.NaT
    if pd.isna(stamp):
        raise InputDataError(f"--as-of {value!r}: not a timestamp; expected ISO-8601 such as "
                             "2024-01-31T12:00:00Z")
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def _forecaster(folder: str | None, regime_model: str) -> Forecaster | None:
    """The forecast model folder's learned models (None without a folder), checked to be
    built on ``regime_model``'s regimes."""
    if not folder:
        return None
    forecaster = load_forecaster(folder, model_version=model_version(regime_model))
    log.debug("%s: %s", folder, ", ".join(f"{name} {task.model}"
                                         for name, task in forecaster.tasks.items()))
    return forecaster


def cmd_forecast(args: argparse.Namespace) -> None:
    if not args.forecast_model and args.vol_model:
        return _forecast_volatility(args, args.vol_model)
    manifest, model = _model(args.model)
    forecaster = _forecaster(args.forecast_model, args.model)
    if forecaster is None:
        raise InputDataError("--forecast-model: not given; give the forecast stage's models "
                             "folder (models/forecast), or --vol-model the forecast-vol "
                             "stage's (models/forecast_vol)")
    vol = _vol_models(args.vol_model, args.model)
    bars = _bars(args.input)
    table = observations(bars, manifest, source=args.input)
    out = regimes(model, table, manifest["features"],
                  names=regime_names(manifest, model.n_states)).drop(
                      columns=["state", "regime"])
    filtered = out[[f"p_filter_{k}" for k in range(model.n_states)]].to_numpy()
    inputs = forecast_inputs(out, table, bars, columns=manifest["feature_spec"]["columns"],
                             n_states=model.n_states, labeller=forecaster.labeller)
    out = pd.concat([out, pd.DataFrame({
        **chain_columns(filtered, model.transmat_, forecaster.horizons),
        **learned_columns(forecaster, inputs.to_numpy(dtype=np.float64), input_runs(out))}),
        *([inputs.add_prefix("input_")] if args.inputs else []),
        *([vol_forecasts(vol, bars, out)] if vol is not None else [])], axis=1)
    _write(out, args.output)
    log.info("%s: %d bars, %d forecast tasks (%s), model %s", args.input, len(out),
             len(forecaster.tasks), ", ".join(forecaster.tasks), args.forecast_model)


def _vol_models(folder: str | None, regime_model: str) -> VolModels | None:
    """The forecast-vol stage's models (None without a folder), checked to be fitted on
    ``regime_model``'s regimes."""
    if not folder:
        return None
    vol = load_vol_models(folder, model_version=model_version(regime_model))
    log.debug("%s: %s", folder, ", ".join(vol.columns))
    return vol


def _forecast_volatility(args: argparse.Namespace, folder: str) -> None:
    """``forecast --vol-model`` without ``--forecast-model``: the filtered regimes and the
    volatility forecasts (the two stages may use different regime families)."""
    manifest, model = _model(args.model)
    vol = load_vol_models(folder, model_version=model_version(args.model))
    bars = _bars(args.input)
    table = observations(bars, manifest, source=args.input)
    out = regimes(model, table, manifest["features"],
                  names=regime_names(manifest, model.n_states)).drop(
                      columns=["state", "regime"])
    out = pd.concat([out, vol_forecasts(vol, bars, out)], axis=1)
    _write(out, args.output)
    log.info("%s: %d bars, volatility forecasts %s, model %s", args.input, len(out),
             ", ".join(vol.columns), args.vol_model)


def cmd_now(args: argparse.Namespace) -> None:
    as_of = _as_of(args.as_of)
    manifest, model = _model(args.model)
    forecaster = _forecaster(args.forecast_model, args.model)
    vol = _vol_models(args.vol_model, args.model)
    # The learned and volatility forecasts read the regime's age, the bull/bear dating
    # and GARCH's recursion from the first bar read: as many bars as the service reads.
    lookback = args.lookback or (FORECAST_LOOKBACK if forecaster or vol else NOW_LOOKBACK)
    rows = latest(model, _bars(args.input), manifest, lookback=lookback, as_of=as_of,
                  source=args.input, forecaster=forecaster, vol=vol)
    _record(args, rows, "now")
    k = model.n_states
    if args.json:
        sys.stdout.write(json_text([latest_json(r, k) for r in rows.to_dict("records")]))
        return
    for _, r in rows.iterrows():
        probs = "  ".join(f"{i}:{r[f'p_filter_{i}']:.3f}" for i in range(k))
        forming = (f"; {r['unclosed']} bar(s) not closed by {as_of.isoformat()} left out"
                   if r["unclosed"] else "")
        sys.stdout.write(f"{r['symbol']} {r['timestamp'].isoformat()} state {r['state']}, "
                         f"{r['regime']} (p = {r[f'p_filter_{r.state}']:.3f}; "
                         f"{probs}{forming})"
                         + "".join(f" | in {f['horizon']} bar(s): {_forecast_line(f)}"
                                   for f in r["forecasts"])
                         + "".join(f" | volatility over {v['horizon']} bar(s): "
                                   + _volatility_line(v) for v in r["volatility"] or [])
                         + "\n")


def _volatility_line(answer: dict[str, Any]) -> str:
    """One horizon of :func:`~regimelab.forecast.vol_apply.latest_volatility` as text, in
    percent of log return (n/a where a model has no forecast)."""
    return ", ".join(f"{name} " + ("n/a" if value is None else f"{100 * value:.2f}%")
                     for name, value in answer.items() if name != "horizon")


def _forecast_line(answer: dict[str, Any]) -> str:
    """One horizon of :func:`~regimelab.forecast.apply.horizon_answers` as text."""
    parts = ["chain " + " ".join(f"{k}:{p:.3f}" for k, p in enumerate(answer["markov"]))
             + f", switch {answer['markov_switch']:.3f}"]
    if "learned" in answer:
        parts.append(f"{answer['learned_model']} "
                     + " ".join(f"{k}:{p:.3f}" for k, p in enumerate(answer["learned"])))
    if "switch" in answer:
        parts.append(f"switch {answer['switch']:.3f} ({answer['switch_model']})")
    if "bull" in answer:
        parts.append(f"bull {answer['bull']:.3f} ({answer['bull_model']})")
    return "; ".join(parts)


def cmd_drift(args: argparse.Namespace) -> int:
    manifest, model = _model(args.model)
    if not Path(args.reference).is_file():
        raise InputDataError(f"--reference {args.reference}: no such file; pass the scaled "
                             "training split the model was fitted on")
    if sha256_file(args.reference) != manifest["training_data_sha256"]:
        if not args.force:
            raise InputDataError(
                f"--reference {args.reference}: not the data {args.model} was trained on (its "
                "SHA-256 differs from the manifest's); pass that scaled training split, or "
                "--force to compare with this file anyway")
        log.warning("%s is not the data %s was trained on", args.reference, args.model)
    try:
        reference = read_parquet(args.reference)
    except (OSError, ValueError) as exc:
        raise InputDataError(f"--reference {args.reference}: not a Parquet table ({exc})"
                             ) from None
    missing = [c for c in ["segment", *manifest["features"]] if c not in reference.columns]
    if missing:
        raise InputDataError(f"--reference {args.reference}: no column {missing[0]!r}; "
                             "expected the scaled training split")
    thresholds = Thresholds(psi=args.psi, ks=args.ks, ll_psi=args.ll_psi, ll_ks=args.ll_ks,
                            occupancy_tv=args.occupancy_tv)
    report = drift_report(model, reference,
                          observations(_bars(args.input), manifest, source=args.input),
                          columns=manifest["features"], thresholds=thresholds)
    if args.output:
        write_json(report, args.output)
    else:
        sys.stdout.write(json_text(report))
    for line in report["breaches"]:
        log.warning("drift: %s", line)
    return 1 if report["drift"] else 0


def cmd_serve(args: argparse.Namespace) -> None:
    from regimelab.serve import serve

    serve(args.model, host=args.host, port=args.port, store=_store(args),
          forecast_model=args.forecast_model, vol_model=args.vol_model,
          workers=args.workers, log_level=log_level(args), access_log=args.access_log)


def cmd_history(args: argparse.Namespace) -> None:
    model = str(Path(args.model).resolve()) if args.model else None
    table = PredictionStore(args.store).history(model=model, symbol=args.symbol,
                                                limit=args.limit)
    # The forecasts as JSON text (empty where none were stored), not Python's repr.
    table["forecasts"] = [None if f is None else json.dumps(f, separators=(",", ":"))
                          for f in table["forecasts"]]
    if args.csv:
        sys.stdout.write(table.to_csv(index=False))
    else:
        with pd.option_context("display.max_rows", None, "display.width", 200):
            sys.stdout.write(("(no predictions stored)" if table.empty
                              else table.drop(columns="id").to_string(index=False)) + "\n")


def cmd_store_upgrade(args: argparse.Namespace) -> None:
    before, after = upgrade_store(args.store)
    sys.stdout.write(f"{store_url(args.store)}: schema {before or 'unversioned or new'} -> "
                     f"{after}\n")


def _store_options(command: argparse.ArgumentParser) -> None:
    command.add_argument("--store", help="prediction store URL (default $REGIMELAB_STORE or "
                                         "sqlite:///predictions.db)")
    command.add_argument("--no-store", action="store_true", help="store no predictions")


def log_level(args: argparse.Namespace) -> int:
    """INFO, a step lower for each ``-v`` and higher for each ``-q`` (DEBUG to ERROR)."""
    steps = getattr(args, "quiet", 0) - getattr(args, "verbose", 0)
    return min(max(logging.INFO + 10 * steps, logging.DEBUG), logging.ERROR)


def _verbosity() -> argparse.ArgumentParser:
    """-v and -q, for the top level and each command: ``regimelab -q now ...`` and
    ``regimelab now ... -q`` both work (SUPPRESS: a command without them leaves the
    top level's count alone)."""
    options = argparse.ArgumentParser(add_help=False)
    options.add_argument("-v", "--verbose", action="count", default=argparse.SUPPRESS,
                         help="log debug lines too")
    options.add_argument("-q", "--quiet", action="count", default=argparse.SUPPRESS,
                         help="log only warnings and errors; -qq only errors")
    return options


def _path(action: argparse.Action, kind: dict[str, Any]) -> None:
    """What the shell completes for an option: files or folders."""
    action.complete = kind  # type: ignore[attr-defined]  # shtab reads this attribute


def parser() -> argparse.ArgumentParser:
    verbosity = _verbosity()
    top = argparse.ArgumentParser(prog="regimelab", description=__doc__, parents=[verbosity],
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
    top.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    shtab.add_argument_to(top, ["--print-completion"],
                          help="print a completion script for this shell and exit")
    sub = top.add_subparsers(dest="command", required=True)

    def command(name: str, help_: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help_, parents=[verbosity])

    def model_option(command: argparse.ArgumentParser, required: bool = True,
                     help_: str | None = None) -> None:
        _path(command.add_argument("--model", required=required, help=help_),
              shtab.DIRECTORY)

    def forecast_option(command: argparse.ArgumentParser, required: bool = False) -> None:
        default = None if required else os.environ.get(FORECAST_ENV) or None
        _path(command.add_argument(
            "--forecast-model", required=required, default=default,
            help="the forecast stage's models folder (models/forecast)" + (
                "" if required else f": adds its learned forecasts (default ${FORECAST_ENV})")),
            shtab.DIRECTORY)

    def vol_option(command: argparse.ArgumentParser) -> None:
        _path(command.add_argument(
            "--vol-model", default=os.environ.get(VOL_ENV) or None,
            help="the forecast-vol stage's models folder (models/forecast_vol), fitted on "
                 "--model's regimes: adds the last bar's volatility forecasts, each model's "
                 f"realised volatility over the next h bars (default ${VOL_ENV})"),
            shtab.DIRECTORY)

    infer = command("infer", "states and posteriors of every bar of new data")
    model_option(infer, help_="a model folder (models/hmm, models/dssm)")
    _path(infer.add_argument("--input", required=True,
                             help="bars: CSV, CSV.gz or Parquet (or a glob)"), shtab.FILE)
    _path(infer.add_argument("--output", help=".parquet, .csv or .csv.gz (default: CSV on "
                                              "stdout)"), shtab.FILE)
    infer.add_argument("--smoothed", action="store_true",
                       help="also the smoothed posteriors (given the whole input: not causal)")
    _store_options(infer)
    infer.set_defaults(func=cmd_infer)
    now = command("now", "the regime of the last closed bar")
    model_option(now)
    _path(now.add_argument("--input", required=True, help="recent bars"), shtab.FILE)
    now.add_argument("--lookback", type=int, default=None,
                     help="bars the filter reads, up to the last one, after the features' "
                          f"warm-up (default {NOW_LOOKBACK}; {FORECAST_LOOKBACK:,} with "
                          "--forecast-model or --vol-model, as the service reads: the "
                          "regime's age, the bull/bear dating and GARCH start at the first "
                          "bar read)")
    now.add_argument("--as-of", help="the clock (default now, UTC): bars that close after "
                                     "it are still forming and are left out")
    now.add_argument("--json", action="store_true", help="JSON instead of one line a symbol")
    forecast_option(now)
    vol_option(now)
    _store_options(now)
    now.set_defaults(func=cmd_now)
    drift = command("drift", "recent bars against the training data; exit 1 on drift")
    model_option(drift)
    _path(drift.add_argument("--input", required=True, help="recent bars"), shtab.FILE)
    _path(drift.add_argument("--reference", default="data/scaled/train.parquet",
                             help="the scaled training split (default "
                                  "data/scaled/train.parquet)"), shtab.FILE)
    _path(drift.add_argument("--output", help="report (JSON); default stdout"), shtab.FILE)
    drift.add_argument("--force", action="store_true",
                       help="compare with a reference that is not the model's training data")
    defaults = Thresholds()
    for flag, help_ in (("psi", "largest PSI of a feature"), ("ks", "largest KS statistic"),
                        ("ll_psi", "largest PSI of the per-bar log-likelihoods (either way)"),
                        ("ll_ks", "largest KS statistic of the per-bar log-likelihoods"),
                        ("occupancy_tv", "largest total variation of the state shares")):
        drift.add_argument(f"--{flag.replace('_', '-')}", type=float,
                           default=getattr(defaults, flag),
                           help=f"{help_} (default {getattr(defaults, flag)})")
    drift.set_defaults(func=cmd_drift)
    srv = command("serve", "POST /regime, GET /health, GET /model over HTTP")
    model_option(srv)
    srv.add_argument("--host", default="127.0.0.1",
                     help="address to bind (default loopback; 0.0.0.0 exposes it)")
    srv.add_argument("--port", type=int, default=8080)
    srv.add_argument("--workers", type=int, default=1,
                     help="server processes sharing the port, each with the model loaded "
                          "(default 1); several should share a database store, not SQLite")
    srv.add_argument("--no-access-log", dest="access_log", action="store_false",
                     help="no log line per request (uvicorn's access log, at INFO)")
    forecast_option(srv)
    vol_option(srv)
    _store_options(srv)
    srv.set_defaults(func=cmd_serve)
    fc = command("forecast", "next-regime and switch probabilities, and realised volatility, "
                             "of every bar of new data")
    model_option(fc, help_="the regime model folder the forecasters were trained on "
                           "(models/jump, ...)")
    forecast_option(fc)
    _path(fc.add_argument("--input", required=True,
                          help="bars: CSV, CSV.gz or Parquet (or a glob)"), shtab.FILE)
    _path(fc.add_argument("--output", help=".parquet, .csv or .csv.gz (default: CSV on "
                                           "stdout)"), shtab.FILE)
    fc.add_argument("--inputs", action="store_true",
                    help="also the inputs the forecasters read (input_<name> columns)")
    _path(fc.add_argument("--vol-model",
                          help="the forecast-vol stage's models folder (models/forecast_vol): "
                               "adds rv_<model>_h{h}, each model's realised volatility over "
                               "the next h bars"), shtab.DIRECTORY)
    fc.set_defaults(func=cmd_forecast)
    hist = command("history", "the stored predictions")
    hist.add_argument("--store", help="prediction store URL")
    model_option(hist, required=False, help_="only this model folder's predictions")
    hist.add_argument("--symbol")
    hist.add_argument("--limit", type=int, help="the last N predictions")
    hist.add_argument("--csv", action="store_true", help="CSV instead of a table")
    hist.set_defaults(func=cmd_history)
    store = command("store", "the prediction store's schema")
    store_commands = store.add_subparsers(dest="action", required=True)
    upgrade = store_commands.add_parser(
        "upgrade", parents=[verbosity],
        help="bring a store made by an older regimelab up to date, keeping its rows (back "
             "it up first)")
    upgrade.add_argument("--store", help="prediction store URL (default $REGIMELAB_STORE or "
                                         "sqlite:///predictions.db)")
    upgrade.set_defaults(func=cmd_store_upgrade)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if getattr(args, "lookback", None) is not None and args.lookback < 1:
        parser().error("--lookback: expected an integer >= 1")
    if not 0 <= getattr(args, "port", 0) <= 65535:
        parser().error("--port: expected an integer in [0, 65535]")
    if getattr(args, "limit", None) is not None and args.limit < 1:
        parser().error("--limit: expected an integer >= 1")
    if getattr(args, "workers", 1) < 1:
        parser().error("--workers: expected an integer >= 1")
    status = 0

    def call(_: object) -> None:
        nonlocal status
        status = args.func(args) or 0

    return run(call, level=log_level(args)) or status


if __name__ == "__main__":
    sys.exit(main())
