"""Named exceptions.

Every error a user can cause by their input or their params is a
:class:`RegimelabError`. Stage scripts and the CLI turn it into a one-line
message and a non-zero exit, never a traceback.
"""

from __future__ import annotations


class RegimelabError(Exception):
    """Base class for errors caused by input data or params."""


class ParamsError(RegimelabError):
    """A params.yaml key is unknown, missing or has a value that is not allowed."""


class InputDataError(RegimelabError):
    """An input file cannot be read or holds no usable bars."""


class FeatureError(RegimelabError):
    """Features cannot be computed as asked."""


class SplitError(RegimelabError):
    """The data cannot be split as asked."""


class ScalingError(RegimelabError):
    """A scaler cannot be fitted or applied."""


class ModelError(RegimelabError):
    """A model cannot be fitted, loaded or applied as asked."""


class MissingDependencyError(RegimelabError):
    """A command needs an optional dependency (an extra) that is not installed."""
