"""The training holdout judged in money: the cost rule against the fixed thresholds."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from streamscore.cli import main
from streamscore.model.decisions import CostModel
from streamscore.model.scorer import Thresholds
from streamscore.model.train import TrainConfig, evaluate_holdout, summary_line
from streamscore.quality.value import business_value


@pytest.fixture(scope="module")
def holdout() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(12)
    n = 5000
    labels = (rng.random(n) < 0.02).astype(np.int8)
    scores = np.clip(rng.beta(1, 30, n) + labels * rng.beta(3, 3, n), 0, 1)
    amounts = rng.lognormal(3.3, 0.7, n) * np.where(labels == 1, 5.0, 1.0)
    return labels, scores, amounts


def test_both_rules_are_valued_with_their_breakdown(holdout: tuple) -> None:
    labels, scores, amounts = holdout
    config = TrainConfig(costs=CostModel.defaults())
    metrics = evaluate_holdout(labels, scores, amounts, config)
    value = metrics["value"]
    thresholds = Thresholds(config.review_threshold, config.decline_threshold)
    expected = business_value(labels, [thresholds.decide(s) for s in scores], amounts, config.costs)
    assert value["thresholds"]["net_value"] == pytest.approx(expected.net_value)
    assert value["thresholds"]["decisions"] == expected.decisions
    for rule in ("cost_rule", "thresholds"):
        v = value[rule]
        assert v["net_value"] == pytest.approx(
            v["stopped"] - v["false_decline_cost"] - v["review_cost"]
        )
        assert set(v["precision_recall"]) == {"review_or_worse", "decline"}
    gain = value["cost_rule_gain"]
    assert gain["net_value"] == pytest.approx(
        value["cost_rule"]["net_value"] - value["thresholds"]["net_value"]
    )
    assert gain["per_event_ci95"][0] <= gain["per_event"] <= gain["per_event_ci95"][1]
    assert metrics["holdout_rows"] == len(labels)
    assert 0 <= metrics["calibration"]["ece"] <= 1
    json.dumps(metrics)  # the model's metadata is JSON


def test_costs_change_the_cost_rule_only(holdout: tuple) -> None:
    labels, scores, amounts = holdout
    dear_reviews = CostModel(2.0, 0.1, 1000.0, 0.1, 0.1)
    metrics = evaluate_holdout(labels, scores, amounts, TrainConfig(costs=dear_reviews))
    assert metrics["value"]["cost_rule"]["decisions"]["REVIEW"] == 0


def test_summary_line(holdout: tuple) -> None:
    metrics = evaluate_holdout(*holdout, TrainConfig())
    line = summary_line(metrics)
    cost_rule = f"cost rule {metrics['value']['cost_rule']['net_value']:,.2f} ("
    assert cost_rule in line
    assert f"thresholds {metrics['value']['thresholds']['net_value']:,.2f} (" in line


def test_train_command_reports_both_rules(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main,
        ["--set", f"models_dir={tmp_path}", "train", "--events", "6000", "--users", "100"],
    )
    assert result.exit_code == 0, result.output
    assert re.search(
        r"cost rule -?[\d,]+\.\d\d \(stopped .*\), thresholds -?[\d,]+\.\d\d", result.output
    )
    (metadata,) = tmp_path.glob("*/metadata.json")
    meta = json.loads(metadata.read_text())
    assert {"cost_rule", "thresholds"} <= set(meta["metrics"]["value"])
    assert meta["train_config"]["costs"] == {
        "false_decline_fixed": 2.0,
        "false_decline_rate": 0.1,
        "review_cost": 3.0,
        "review_miss_rate": 0.1,
        "review_friction_share": 0.1,
    }
