"""The PyFlink scoring job: its Python functions and the graph that wires them to Kafka."""

# The scoring operator's name in the Flink UI and REST API, where the benchmark reads its
# checkpoints (bench/report.py); kept here, away from PyFlink's imports.
SCORING_OPERATOR = "decode-features-score"
