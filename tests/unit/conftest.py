"""Fixtures shared by the unit tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest


@pytest.fixture(scope="session")
def operators_jvm(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """PyFlink's JVM (through Py4J) with the operators' jar built from the package's sources."""
    from pyflink.java_gateway import get_gateway
    from pyflink.util.java_utils import add_jars_to_context_class_loader

    from streamscore.job.jvm_jar import operators_jar

    jar = operators_jar(Path(tmp_path_factory.mktemp("jvm")))
    add_jars_to_context_class_loader([jar.as_uri()])
    return get_gateway().jvm
