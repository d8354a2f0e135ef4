"""Forecasts on top of the regimes: the next regime, and realised volatility."""
