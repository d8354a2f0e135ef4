"""Walk-forward backtests of regime strategies: does acting on the regime pay?

:mod:`~regimelab.backtest.walkforward` refits a family's model on the past only
and labels each next block with its filtered (online) labels;
:mod:`~regimelab.backtest.rules` turns the labels into positions and executes
them with a delay and costs; :mod:`~regimelab.backtest.stats` describes the
returns (Sharpe with block-bootstrap intervals, the Probabilistic and Deflated
Sharpe Ratio); :mod:`~regimelab.backtest.report` runs it all for every symbol
and family and writes what the stage reports.
"""
