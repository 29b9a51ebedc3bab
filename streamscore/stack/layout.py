"""Where the stack keeps its files: everything under one git-ignored state directory."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class StackLayout:
    root: Path

    @property
    def kafka_libs(self) -> Path:
        return self.root / "jars" / "kafka"

    @property
    def flink_jars(self) -> Path:
        return self.root / "jars" / "flink"

    @property
    def kafka_data(self) -> Path:
        return self.root / "kafka" / "data"

    @property
    def kafka_config(self) -> Path:
        return self.root / "kafka" / "server.properties"

    @property
    def redis_dir(self) -> Path:
        return self.root / "redis"

    @property
    def flink_conf(self) -> Path:
        return self.root / "flink" / "conf"

    @property
    def flink_work(self) -> Path:
        return self.root / "flink"

    @property
    def checkpoints(self) -> Path:
        return self.root / "flink" / "checkpoints"

    @property
    def savepoints(self) -> Path:
        return self.root / "flink" / "savepoints"

    @property
    def prometheus_data(self) -> Path:
        return self.root / "prometheus" / "data"

    @property
    def prometheus_config(self) -> Path:
        return self.root / "prometheus" / "prometheus.yml"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def pids(self) -> Path:
        return self.root / "pids"

    @property
    def supervisor_config(self) -> Path:
        return self.root / "supervisord.conf"

    @property
    def supervisor_socket(self) -> Path:
        return self.root / "supervisor.sock"

    def pid_file(self, name: str) -> Path:
        return self.pids / f"{name}.pid"

    def log_file(self, name: str) -> Path:
        return self.logs / f"{name}.log"

    def create(self) -> None:
        for d in (
            self.kafka_libs,
            self.flink_jars,
            self.kafka_data,
            self.redis_dir,
            self.prometheus_data,
            self.flink_conf,
            self.checkpoints,
            self.savepoints,
            self.logs,
            self.pids,
        ):
            d.mkdir(parents=True, exist_ok=True)
