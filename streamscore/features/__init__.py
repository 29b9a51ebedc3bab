"""Feature definitions (declarative) and the one engine that computes them online and offline."""

from streamscore.features.definitions import FEATURE_SET, FeatureSet, NumericAggregate, Window
from streamscore.features.engine import FeatureEngine, UserState

__all__ = ["FEATURE_SET", "FeatureEngine", "FeatureSet", "NumericAggregate", "UserState", "Window"]
