"""Forecasts on top of the regimes: the next regime, and realised volatility.

Labels (a trained family's hindsight path, a model-free bull/bear dating of the
price), the targets built from them (the regime ``h`` bars ahead, a switch within
the next ``h`` bars), the inputs known at the close of each bar (scaled features,
filtered posteriors, the regime's age), the baselines (persistence, the model's
own Markov chain), tree models tuned walk-forward with Optuna, their evaluation
on the test split, and model folders that load without pickle
(:mod:`regimelab.forecast.volatility`: HAR-RV and GARCH(1,1) forecasts of realised
volatility, each with and without the filtered regime posteriors; their fitted models
saved as JSON and applied to new bars by :mod:`regimelab.forecast.vol_apply`).
"""
