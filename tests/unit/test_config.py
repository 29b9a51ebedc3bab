import pytest
from pydantic import ValidationError

from streamscore.config import DeliveryGuarantee, Settings, parse_overrides


def test_env_vars_override_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMSCORE_CHECKPOINT_INTERVAL_MS", "2000")
    monkeypatch.setenv("STREAMSCORE_DELIVERY_GUARANTEE", "at-least-once")
    s = Settings()
    assert s.checkpoint_interval_ms == 2000
    assert s.delivery_guarantee is DeliveryGuarantee.AT_LEAST_ONCE


def test_cli_overrides_win_over_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMSCORE_PARALLELISM", "3")
    s = Settings().with_overrides(parse_overrides(["parallelism=2", "kafka-port=19092"]))
    assert s.parallelism == 2
    assert s.kafka_bootstrap == "127.0.0.1:19092"


@pytest.mark.parametrize(
    "overrides",
    [
        {"review_threshold": "0.9", "decline_threshold": "0.5"},
        {"allowed_lateness_ms": "600000"},
        {"transaction_timeout_ms": "3600000"},
        {"no_such_setting": "1"},
        {"scoring_batch_max_wait_ms": "30"},  # above the busy wait (20)
    ],
)
def test_inconsistent_settings_are_refused(overrides: dict[str, str]) -> None:
    with pytest.raises(ValidationError):
        Settings().with_overrides(overrides)


def test_override_syntax_is_checked() -> None:
    with pytest.raises(ValueError, match="field=value"):
        parse_overrides(["parallelism"])


def test_secrets_are_hidden() -> None:
    s = Settings().with_overrides({"redis_password": "hunter2"})
    assert "hunter2" not in str(s.as_dict())
    assert s.redis_password is not None and s.redis_password.get_secret_value() == "hunter2"
