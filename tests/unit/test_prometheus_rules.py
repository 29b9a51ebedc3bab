"""The Prometheus rules and the local stack's Prometheus config, checked by Prometheus' own
``promtool``: syntax, and a unit test with synthetic series for every alert
(tests/promtool/rules_test.yml). promtool comes with Debian's prometheus package, which
``make setup`` installs with the rest of the stack."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from streamscore.config import Settings
from streamscore.resources import prometheus_rules
from streamscore.stack.prometheus import scrape_config

ROOT = Path(__file__).resolve().parents[2]
RULE_TESTS = ROOT / "tests" / "promtool" / "rules_test.yml"


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("promtool")
    assert binary, "promtool is missing: `make setup` installs Debian's prometheus package"
    return subprocess.run([binary, *args], capture_output=True, text=True, timeout=120)


def alert_names() -> list[str]:
    groups = yaml.safe_load(prometheus_rules().read_text())["groups"]
    return [rule["alert"] for group in groups for rule in group["rules"] if "alert" in rule]


def test_rules_are_valid() -> None:
    result = promtool("check", "rules", str(prometheus_rules()))
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_passes_its_rule_tests() -> None:
    result = promtool("test", "rules", str(RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr


def test_rule_tests_fix_the_order_of_every_group() -> None:
    """promtool evaluates groups missing from ``group_eval_order`` in random order, which makes
    an alert that reads a recorded series pass or fail by chance."""
    groups = [group["name"] for group in yaml.safe_load(prometheus_rules().read_text())["groups"]]
    order = yaml.safe_load(RULE_TESTS.read_text()).get("group_eval_order", [])
    assert sorted(order) == sorted(groups), "group_eval_order must name every group"


def test_every_alert_is_tested_firing_and_silent() -> None:
    cases = [
        case
        for test in yaml.safe_load(RULE_TESTS.read_text())["tests"]
        for case in test.get("alert_rule_test", [])
    ]
    for name in alert_names():
        outcomes = [bool(c["exp_alerts"]) for c in cases if c["alertname"] == name]
        assert True in outcomes, f"{name}: no rule test where it fires"
        assert False in outcomes, f"{name}: no rule test where it stays silent"


def test_local_prometheus_config_is_valid(tmp_path: Path) -> None:
    config = tmp_path / "prometheus.yml"
    config.write_text(yaml.safe_dump(scrape_config(Settings())))
    result = promtool("check", "config", str(config))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("name", alert_names())
def test_every_alert_has_a_runbook_line_in_the_readme(name: str) -> None:
    readme = (ROOT / "README.md").read_text()
    alerts_section = readme.split("\n### Alerts", 1)[1].split("\n## ", 1)[0]
    assert f"`{name}`" in alerts_section, f"README's Alerts section has no runbook for {name}"
