"""The deep state-space model family: a regime chain with a GRU context network.

``model`` holds the :class:`~regimelab.families.dssm.model.RegimeDSSM`
estimator and its persistence, ``fit`` how train-dssm configures and trains it,
``infer`` the compiled context pass for inference and ``recursions`` the exact
forward, backward and Viterbi recursions; ``net`` holds the ``nn.Module``,
``module`` the LightningModule and ``data`` the windows and the
LightningDataModule. torch is imported only when one of them is.
"""
