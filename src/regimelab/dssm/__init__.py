"""The deep state-space model: a regime chain with a GRU context network.

``net`` holds the ``nn.Module``, ``module`` the LightningModule, ``data`` the
windows and the LightningDataModule, ``recursions`` the exact inference, and
``model`` the :class:`~regimelab.dssm.model.RegimeDSSM` estimator. torch is
imported only when one of them is.
"""
