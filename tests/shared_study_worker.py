"""One select-states worker on a shared Optuna study (run by tests/test_shared_study.py).

    python tests/shared_study_worker.py STORAGE NAME OUT --fits LOG [--slow SECONDS]

Runs :func:`regimelab.selection.run_selection` on a small synthetic market and
a grid of six points, writes the result (JSON) to ``OUT``, and appends a line
to ``LOG`` when a fit starts and when it ends (``start|done PID K TYPE``), so
the test can count fits across processes. ``--slow`` makes every fit wait
first, so that the test can kill a worker while it holds running trials.
Heartbeats are seconds apart here, not minutes.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from typing import Any

import numpy as np

from regimelab import selection
from regimelab.params import GridParams, HMMParams, SelectParams
from regimelab.synth import make_market

GRID = GridParams(n_states=(2, 3, 4), covariance_type=("diag", "full"))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("storage")
    parser.add_argument("name")
    parser.add_argument("out")
    parser.add_argument("--fits", required=True)
    parser.add_argument("--slow", type=float, default=0.0)
    parser.add_argument("--n-jobs", type=int, default=1)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s {os.getpid()} %(message)s")
    selection.HEARTBEAT_INTERVAL_S = 1
    selection.HEARTBEAT_GRACE_S = 4
    selection.POLL_S = 0.5

    evaluate = selection.evaluate_candidate

    def counted(*a: Any, **kw: Any) -> dict[str, Any]:
        point = f"{os.getpid()} {kw['n_states']} {kw['covariance_type']}"
        with open(args.fits, "a") as log:
            log.write(f"start {point}\n")
        time.sleep(args.slow)
        try:
            return evaluate(*a, **kw)
        finally:  # a candidate that cannot be fitted was still tried once
            with open(args.fits, "a") as log:
                log.write(f"done {point}\n")

    selection.evaluate_candidate = counted

    bars = make_market(800, n_regimes=2, stickiness=0.98, random_state=5)
    x = np.log(np.log(bars["high"] / bars["low"])).to_numpy()
    x = ((x - x.mean()) / x.std())[:, None]
    cut = 600
    result = selection.run_selection(
        x[:cut], np.array([cut]), x[cut:], np.array([len(x) - cut]),
        select=SelectParams(grid=GRID, criterion="bic", resamples=1, penalties=(5.0,),
                            n_jobs=args.n_jobs),
        hmm=HMMParams(n_init=2), seed=0, storage=args.storage, name=args.name,
        feature_names=["parkinson_1_1h"])
    with open(args.out, "w") as out:
        json.dump(result, out, sort_keys=True)


if __name__ == "__main__":
    main()
