"""The PyFlink scoring job: its Python functions and the graph that wires them to Kafka."""
