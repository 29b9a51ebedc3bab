"""Trains the LightGBM fraud model and writes a versioned model directory.

The holdout is the last part of the log by event time, as it would be in production: the model
is judged on the future, never on a random shuffle of the past. Besides ranking and calibration,
the holdout is judged in money: the net value (compared with approving everything, see
``streamscore.quality.value``) of the cost-based decisions and of the fixed score thresholds,
so a new model, or new costs, can be weighed before they decide anything.
"""

from __future__ import annotations

import json
import logging
import platform
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from streamscore import __version__
from streamscore.config import Settings
from streamscore.errors import StreamscoreError
from streamscore.eventlog import read_jsonl
from streamscore.features.definitions import FEATURE_SET
from streamscore.generator import GeneratorConfig, TransactionGenerator
from streamscore.model.dataset import TrainingSet, build_training_set
from streamscore.model.decisions import CostModel
from streamscore.model.registry import METADATA_FILE, MODEL_FILE, VERSION_PREFIX
from streamscore.model.scorer import Thresholds
from streamscore.monitoring.drift import METADATA_KEY as DRIFT_METADATA_KEY
from streamscore.monitoring.drift import reference_metadata
from streamscore.quality.bootstrap import mean_ci
from streamscore.quality.metrics import (
    calibration,
    log_loss,
    precision_recall_at,
    precision_recall_by_decision,
    roc_auc,
)
from streamscore.quality.value import business_value, event_values

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
    costs: CostModel = field(default_factory=CostModel.defaults)


def evaluate_holdout(
    labels: np.ndarray, scores: np.ndarray, amounts: np.ndarray, config: TrainConfig
) -> dict[str, Any]:
    """The holdout's metrics: AUC, log-loss, calibration, precision/recall at the thresholds,
    and the value of each decision rule (cost rule, fixed thresholds) with its breakdown.

    Decisions are made by the very functions the job calls per event (``CostModel.decide``,
    ``Thresholds.decide``), so the figures are those the job would have produced."""
    cost_rule = [config.costs.decide(p, a) for p, a in zip(scores.tolist(), amounts.tolist())]
    thresholds = Thresholds(config.review_threshold, config.decline_threshold)
    fixed = [thresholds.decide(p) for p in scores.tolist()]
    by_rule: dict[str, dict[str, Any]] = {}
    for name, decisions in (("cost_rule", cost_rule), ("thresholds", fixed)):
        by_rule[name] = {
            **business_value(labels, decisions, amounts, config.costs).as_dict(),
            "precision_recall": precision_recall_by_decision(labels, decisions),
        }
    # Paired: the same events under both rules, so the interval is of the gain itself.
    gain = event_values(labels, cost_rule, amounts, config.costs) - event_values(
        labels, fixed, amounts, config.costs
    )
    return {
        "auc": roc_auc(labels, scores),
        "log_loss": log_loss(labels, scores),
        "review": precision_recall_at(labels, scores, config.review_threshold),
        "decline": precision_recall_at(labels, scores, config.decline_threshold),
        "holdout_rows": len(labels),
        "holdout_positives": int(labels.sum()),
        "calibration": calibration(labels, scores).as_dict(),
        "value": {
            **by_rule,
            "cost_rule_gain": {
                "net_value": float(gain.sum()),
                "per_event": float(gain.mean()) if len(gain) else float("nan"),
                "per_event_ci95": list(mean_ci(gain, seed=config.seed)),
            },
        },
    }


def summary_line(metrics: dict[str, Any]) -> str:
    """The holdout's figures in two lines, for the ``train`` command's output."""

    def rule(v: dict[str, Any]) -> str:
        d = v["decisions"]
        return (
            f"{v['net_value']:,.2f} (stopped {v['stopped']:,.2f}, false declines "
            f"{v['false_decline_cost']:,.2f}, reviews {v['review_cost']:,.2f}; "
            f"{d['REVIEW']} reviewed, {d['DECLINE']} declined)"
        )

    value = metrics["value"]
    return (
        f"AUC {metrics['auc']:.4f}, log-loss {metrics['log_loss']:.4f}, "
        f"ECE {metrics['calibration']['ece']:.4f} on {metrics['holdout_rows']} holdout rows\n"
        f"holdout net value vs approving all: cost rule {rule(value['cost_rule'])}, "
        f"thresholds {rule(value['thresholds'])}"
    )


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
    amounts = test_x[:, data.feature_names.index("amount")]  # the event's own amount
    metrics = evaluate_holdout(test_y, scores, amounts, config)
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
        # What the job's drift gauges compare with (monitoring/drift.py): every feature and the
        # score over all rows (see there why not the holdout alone).
        DRIFT_METADATA_KEY: reference_metadata(
            data.feature_names, data.features, booster.predict(data.features)
        ),
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
        "model %s: AUC %.4f, log-loss %.4f on %d holdout rows; net value: cost rule %.2f, "
        "thresholds %.2f",
        version,
        metrics["auc"],
        metrics["log_loss"],
        metrics["holdout_rows"],
        metrics["value"]["cost_rule"]["net_value"],
        metrics["value"]["thresholds"]["net_value"],
    )
    # The directory stays the job's source; the registry gets a new version of it too.
    from streamscore.model.mlflow_registry import register_trained

    register_trained(directory)
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


def train_from_topics(models_dir: Path, config: TrainConfig, settings: Settings) -> Path:
    """The point-in-time training set of the events and labels topics (see topics_dataset)."""
    from streamscore.model.topics_dataset import labelled_events_from_topics

    data = build_training_set(labelled_events_from_topics(settings))
    if len(data) == 0 or data.labels.sum() == 0:
        raise StreamscoreError(
            f"no labelled events with a fraud among them on {settings.topic_events} / "
            f"{settings.topic_labels}: produce some (streamscore produce) first"
        )
    source = {
        "source": "topics",
        "topics": [settings.topic_events, settings.topic_labels],
        "kafka": settings.kafka_bootstrap,
    }
    return train(data, config, models_dir, source)
