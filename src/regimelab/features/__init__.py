"""Features: the catalogue of kinds, exact rolling windows, batch and latest-bar builders."""

from regimelab.features.build import FeatureResult, build_features, latest_features
from regimelab.features.catalog import KINDS, FeatureDef, parse_feature, select_features

__all__ = ["KINDS", "FeatureDef", "FeatureResult", "build_features", "latest_features",
           "parse_feature", "select_features"]
