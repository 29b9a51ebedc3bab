"""A real Kafka broker, Redis server and Flink cluster, started once per test session.

The test stack runs on its own ports and state dir, so it can run beside a user's demo stack,
and it starts from empty data every session. Jars fetched from Maven are kept between sessions.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from streamscore.config import Settings
from streamscore.generator import GeneratorConfig
from streamscore.jobcontrol import cancel, submit
from streamscore.model.train import TrainConfig, train_from_generator
from tests.e2e.helpers import REPO, RunJob, as_overrides, fresh_stack

TEST_STACK = {
    "state_dir": str(REPO / ".stack-test"),
    "kafka_port": "19092",
    "kafka_controller_port": "19093",
    "redis_port": "16379",
    "flink_rest_port": "18081",
    "flink_rpc_port": "16123",
    "metrics_port": "19260",
    "flink_prometheus_port": "19249-19258",
    "prometheus_port": "19090",
    "checkpoint_interval_ms": "2000",
    # Written ahead through the whole interval: every batch the job keeps up with is followed by
    # a write-ahead, so the exactly-once, chaos and upgrade tests hold with it (a backlog's full
    # batches still leave their writes to the barrier). test_pipeline checks that it happened.
    "state_write_ahead_ms": "2000",
}


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    models = tmp_path_factory.mktemp("models")
    train_from_generator(
        models, TrainConfig(events=40_000, num_boost_round=60), GeneratorConfig(users=400, seed=21)
    )
    return models


@pytest.fixture(scope="session")
def stack_overrides(models_dir: Path) -> dict[str, str]:
    return {**TEST_STACK, "models_dir": str(models_dir)}


@pytest.fixture(scope="session")
def stack(stack_overrides: dict[str, str]) -> Iterator[Settings]:
    with fresh_stack(Settings().with_overrides(stack_overrides)) as settings:
        yield settings


@pytest.fixture()
def job_settings(stack: Settings, stack_overrides: dict[str, str]) -> dict[str, str]:
    """Overrides for one job run: its own name and consumer group."""
    run = uuid.uuid4().hex[:8]
    return {**stack_overrides, "job_name": f"e2e-{run}", "consumer_group": f"e2e-{run}"}


@pytest.fixture()
def run_job(job_settings: dict[str, str]) -> Iterator[RunJob]:
    """Factory: ``run_job(setting=value, ...)`` submits a job with the test stack's settings plus
    these, waits until it runs and returns its settings; every job is cancelled afterwards."""
    started: list[tuple[Settings, str]] = []

    def start(**extra: str) -> Settings:
        overrides = {**job_settings, **{k: str(v) for k, v in extra.items()}}
        settings = Settings().with_overrides(overrides)
        started.append((settings, submit(settings, as_overrides(overrides))))
        return settings

    yield start
    for settings, job_id in started:
        cancel(settings, job_id)
