"""Statistical jump models: k-means-like regimes with a penalty on every switch.

The discrete model (Nystrup, Lindström & Madsen 2020) assigns each bar one of
K states and pays ``jump_penalty`` for each change of state; the continuous
model (Aydinhan, Kolm, Mulvey & Shu 2024) assigns each bar a probability
vector on a grid of the simplex and pays ``jump_penalty`` times the squared
half-L1 distance between consecutive vectors. Both are fitted by coordinate
descent (centres, then the optimal path by dynamic programming), exactly as
the reference implementation ``jumpmodels`` does, with the programme compiled
by numba (:mod:`.infer`) and the estimator in :mod:`.model`.
"""
