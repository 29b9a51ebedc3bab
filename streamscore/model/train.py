"""Trains the LightGBM fraud model and writes a versioned model directory.

The holdout is the last part of the log by event time, as it would be in production: the model
is judged on the future, never on a random shuffle of the past.
"""

from __future__ import annotations

import json
import logging
import platform
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from streamscore import __version__
from streamscore.eventlog import read_jsonl
from streamscore.features.definitions import FEATURE_SET
from streamscore.generator import GeneratorConfig, TransactionGenerator
from streamscore.model.dataset import TrainingSet, build_training_set
from streamscore.model.registry import METADATA_FILE, MODEL_FILE, VERSION_PREFIX

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    events: int = 200_000
    holdout_fraction: float = 0.2
    num_boost_round: int = 200
    learning_rate: float = 0.05
    num_leaves: int = 31
    seed: int = 7
    review_threshold: float = 0.5
    decline_threshold: float = 0.85


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve via the rank-sum statistic (ties get average ranks)."""
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores), dtype=np.float64)
    sorted_scores = scores[order]
    i = 0
    while i < len(scores):
        j = i
        while j + 1 < len(scores) and sorted_scores[j + 1] == sorted_scores[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    positives = labels == 1
    n_pos, n_neg = int(positives.sum()), int((~positives).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    return float((ranks[positives].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def log_loss(labels: np.ndarray, scores: np.ndarray) -> float:
    p = np.clip(scores, 1e-15, 1 - 1e-15)
    return float(-np.mean(labels * np.log(p) + (1 - labels) * np.log(1 - p)))


def precision_recall_at(
    labels: np.ndarray, scores: np.ndarray, threshold: float
) -> dict[str, float]:
    flagged = scores >= threshold
    tp = int((flagged & (labels == 1)).sum())
    return {
        "threshold": threshold,
        "precision": tp / int(flagged.sum()) if flagged.any() else 0.0,
        "recall": tp / int((labels == 1).sum()) if (labels == 1).any() else 0.0,
        "flagged": int(flagged.sum()),
    }


def split_by_time(data: TrainingSet, holdout_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    cutoff = np.quantile(data.event_times, 1.0 - holdout_fraction)
    return data.event_times < cutoff, data.event_times >= cutoff


def train(data: TrainingSet, config: TrainConfig, models_dir: Path, source: dict[str, Any]) -> Path:
    import lightgbm

    train_mask, test_mask = split_by_time(data, config.holdout_fraction)
    params = {
        "objective": "binary",
        "learning_rate": config.learning_rate,
        "num_leaves": config.num_leaves,
        "min_data_in_leaf": 50,
        "feature_fraction": 0.9,
        "bagging_fraction": 0.8,
        "bagging_freq": 1,
        "seed": config.seed,
        "deterministic": True,
        "num_threads": 2,
        "verbose": -1,
    }
    categorical = list(FEATURE_SET.categorical_features)
    train_set = lightgbm.Dataset(
        data.features[train_mask],
        data.labels[train_mask],
        feature_name=list(data.feature_names),
        categorical_feature=categorical,
        free_raw_data=False,
    )
    booster = lightgbm.train(params, train_set, num_boost_round=config.num_boost_round)
    test_x, test_y = data.features[test_mask], data.labels[test_mask]
    scores = booster.predict(test_x)
    metrics = {
        "auc": roc_auc(test_y, scores),
        "log_loss": log_loss(test_y, scores),
        "review": precision_recall_at(test_y, scores, config.review_threshold),
        "decline": precision_recall_at(test_y, scores, config.decline_threshold),
        "holdout_rows": int(test_mask.sum()),
        "holdout_positives": int(test_y.sum()),
    }
    created = datetime.now(UTC)
    version = f"{VERSION_PREFIX}{created:%Y%m%d%H%M%S}"
    directory = models_dir / version
    directory.mkdir(parents=True, exist_ok=False)
    booster.save_model(str(directory / MODEL_FILE))
    metadata = {
        "version": version,
        "created_at": created.isoformat(),
        "feature_set_version": FEATURE_SET.version,
        "feature_names": list(data.feature_names),
        "categorical_features": categorical,
        "training_data": {
            **source,
            "rows": len(data),
            "positives": int(data.labels.sum()),
            "event_time_min": int(data.event_times.min()),
            "event_time_max": int(data.event_times.max()),
            "train_rows": int(train_mask.sum()),
            "holdout_from_event_time": int(data.event_times[test_mask].min()),
        },
        "metrics": metrics,
        "params": {**params, "num_boost_round": config.num_boost_round},
        "train_config": asdict(config),
        "libraries": {
            "streamscore": __version__,
            "lightgbm": lightgbm.__version__,
            "numpy": np.__version__,
            "python": platform.python_version(),
        },
    }
    (directory / METADATA_FILE).write_text(json.dumps(metadata, indent=2), encoding="utf-8")
    log.info(
        "model %s: AUC %.4f, log-loss %.4f on %d holdout rows",
        version,
        metrics["auc"],
        metrics["log_loss"],
        metrics["holdout_rows"],
    )
    return directory


def train_from_generator(
    models_dir: Path, config: TrainConfig, generator_config: GeneratorConfig
) -> Path:
    generator = TransactionGenerator(generator_config)
    labelled = ((t.event, t.is_fraud) for t in (next(generator) for _ in range(config.events)))
    data = build_training_set(labelled)
    return train(data, config, models_dir, {"source": "generator", **asdict(generator_config)})


def train_from_file(models_dir: Path, config: TrainConfig, path: Path) -> Path:
    data = build_training_set((event, bool(label)) for event, label in read_jsonl(path))
    return train(data, config, models_dir, {"source": str(path)})
