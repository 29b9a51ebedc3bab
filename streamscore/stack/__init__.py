"""The local stack without Docker: Kafka (KRaft) from Maven jars, Redis, Flink from the wheel."""

from streamscore.stack.errors import StackError

__all__ = ["StackError"]
