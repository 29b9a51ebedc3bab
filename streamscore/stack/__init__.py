"""The local stack without Docker: Kafka (KRaft) from Maven jars, Redis, Flink from the wheel."""
