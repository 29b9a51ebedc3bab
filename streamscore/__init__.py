"""streamscore: real-time ML scoring on Kafka, PyFlink, Redis and LightGBM."""

__version__ = "0.1.0"
