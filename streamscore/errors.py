"""The one error hierarchy of streamscore.

Everything the package raises on purpose derives from ``StreamscoreError``, so a caller (the CLI
above all) catches one type and shows its message as one line: the message is written for the
user and says what to do. Programming errors stay ordinary exceptions with their tracebacks.
"""

from __future__ import annotations


class StreamscoreError(Exception):
    """A failure the user can act on; the message says how."""


class ConfigError(StreamscoreError, ValueError):
    """Settings that cannot work together, or a value of the wrong form."""


class StackError(StreamscoreError):
    """A local server could not be started, reached or stopped."""


class KafkaUnavailable(StreamscoreError):
    """The Kafka broker did not answer at the configured address."""


class UnknownTopic(StreamscoreError):
    """A topic that is not configured, or that the broker does not have."""


class ModelNotFound(StreamscoreError):
    """No model version matches what was asked for."""


class Rejection(StreamscoreError):
    """Why a record cannot be scored: ``reason`` is a stable code for dead letters and metrics
    (``decode_error``, ``invalid:<field>``, ``late``), ``detail`` the explanation."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class PrometheusUnavailable(StreamscoreError):
    """Prometheus did not answer at the configured address (the health report and ``status``
    read every series from it); ``url`` is where it was asked."""

    def __init__(self, url: str, detail: str) -> None:
        super().__init__(
            f"Prometheus is not reachable at {url} ({detail}): run `streamscore stack up`"
        )
        self.url = url
