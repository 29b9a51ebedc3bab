"""The CLI's common failures end in one friendly line and exit code 1, never a traceback.

These use real sockets: a port nobody listens on is a server that is down, a bound socket is a
port that is taken. No server is needed."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from streamscore.cli import main


@pytest.fixture()
def closed_port() -> int:
    """A loopback port with nothing listening (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture()
def taken_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def assert_one_line_error(result: Result, expected: str) -> None:
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    assert expected in lines[0]


@pytest.mark.parametrize(
    "command",
    [["consume", "--timeout", "1"], ["produce", "--count", "1"]],
)
def test_kafka_down(closed_port: int, command: list[str]) -> None:
    result = run("--set", f"kafka_port={closed_port}", *command)
    assert_one_line_error(result, f"Kafka is not reachable at 127.0.0.1:{closed_port}")


def test_unknown_topic() -> None:
    assert_one_line_error(run("consume", "--topic", "nope"), "unknown topic 'nope'")


def test_no_such_model_version(tmp_path: Path) -> None:
    result = run("--set", f"models_dir={tmp_path}", "--set", "model_version=fraud-lgbm-1", "submit")
    assert_one_line_error(result, "model 'fraud-lgbm-1' not in")


def test_port_taken(tmp_path: Path, taken_port: int) -> None:
    result = run(
        "--set", f"state_dir={tmp_path}", "--set", f"kafka_port={taken_port}", "stack", "up"
    )
    assert_one_line_error(result, f"port 127.0.0.1:{taken_port} for Kafka is taken")


def test_invalid_settings() -> None:
    result = run("--set", "review_threshold=0.99", "config")
    assert_one_line_error(result, "review_threshold must not exceed decline_threshold")


def test_bad_event_log_line(tmp_path: Path) -> None:
    log = tmp_path / "events.jsonl"
    log.write_text('{"event_id": "e1"}\n')
    assert_one_line_error(run("train", "--from-file", str(log)), "events.jsonl:1: not an event")
