"""The Gaussian HMM family (hmmlearn): ``model`` holds the
:class:`~regimelab.families.hmm.model.RegimeHMM` estimator and its persistence,
``fit`` how train-hmm and select-states configure and train it, ``infer`` the
numerically safe forward-backward and the filter."""
