"""The Avro layouts the job's hand-written encoders and decoders write and read, and the check
that a schema still has them.

Each encoder and decoder (``avro_encoders``, ``avro_decoders``) writes or reads its record
field by field in a fixed order, so it checks its schema against its layout once, when it is
built: a schema change fails there, not in a consumer. Used only when they are built, so this
module is not compiled.
"""

from __future__ import annotations

from typing import Any

Layout = tuple[tuple[str, str], ...]

# The prediction schema's fields and Avro types, in order, as its encoder writes them.
PREDICTION_LAYOUT: Layout = (
    ("event_id", "string"),
    ("user_id", "string"),
    ("event_time", "long"),
    ("score", "double"),
    ("decision", "enum"),
    ("model_version", "string"),
    ("feature_set_version", "string"),
    ("degraded", "array<string>"),
    ("ingest_time", "long"),
    ("scored_time", "long"),
    ("amount", "null|double"),
    ("arm", "string"),
    ("challenger_score", "null|double"),
    ("challenger_version", "null|string"),
)

# The labelled outcome schema's fields and Avro types, in order, as its encoder writes them.
OUTCOME_LAYOUT: Layout = (
    ("event_id", "string"),
    ("user_id", "string"),
    ("event_time", "long"),
    ("label_time", "long"),
    ("is_fraud", "boolean"),
    ("amount", "double"),
    ("score", "double"),
    ("decision", "string"),
    ("model_version", "string"),
    ("arm", "string"),
    ("canary_percent", "int"),
    ("champion_score", "null|double"),
    ("challenger_score", "null|double"),
    ("challenger_version", "null|string"),
    ("feature_set_version", "string"),
    ("features", "array<double>"),
)

# The event and label schemas' fields, as their decoders read them.
EVENT_LAYOUT: Layout = (
    ("event_id", "string"),
    ("user_id", "string"),
    ("event_time", "long"),
    ("amount", "double"),
    ("currency", "string"),
    ("merchant_id", "string"),
    ("merchant_category", "string"),
    ("country", "string"),
    ("channel", "enum"),
    ("device_id", "null|string"),
)
LABEL_LAYOUT: Layout = (
    ("event_id", "string"),
    ("user_id", "string"),
    ("is_fraud", "boolean"),
    ("label_time", "long"),
)


def avro_type(node: Any) -> str:
    """A field's Avro type as the layouts spell it: ``long``, ``null|double``, ``array<string>``."""
    if isinstance(node, list):
        return "|".join(avro_type(branch) for branch in node)
    if isinstance(node, dict):
        if node["type"] == "array":
            return f"array<{avro_type(node['items'])}>"
        return str(node["type"])
    return str(node)


def check_layout(schema: dict[str, Any], expected: Layout) -> None:
    """``ValueError`` unless ``schema``'s fields are ``expected``'s, in its order."""
    layout = tuple((f["name"], avro_type(f["type"])) for f in schema["fields"])
    if layout != expected:
        raise ValueError(f"the {schema['name']} schema changed; the encoder writes {expected}")
