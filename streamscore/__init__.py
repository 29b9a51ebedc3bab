"""streamscore: real-time ML scoring on Kafka, PyFlink, Redis and LightGBM."""

from streamscore import native

__version__ = "0.1.0"

# Before any compiled module is imported: the build, only if it is current (native.py).
native.use_compiled_or_sources()
