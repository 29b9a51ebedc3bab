"""The job's own JVM classes, compiled into two jars the job ships with it.

* ``operators_jar``: the operators (``jvm/*.java``; ``batches.py`` says why they exist), built
  against the Flink jars of the installed PyFlink, so they always match the Flink they run in.
* ``kafka_jar``: the Kafka sink's record serializer (``jvm/kafka/*.java``), built against those
  and the Kafka connector's jar in the same directory (its producer classes are shaded into it),
  apart so that the operators build without the connector (the tests' own jobs need no Kafka).

Each jar's name carries a digest of its sources (and of the connector jar's name): a changed
source builds a new jar, an unchanged one is built once. Building needs ``javac`` (a JDK 11 or
later: ``make setup`` installs one); the Docker image builds both when it is made.

    python -m streamscore.job.jvm_jar DIRECTORY   # build both (if needed) and print their paths
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from importlib import resources
from pathlib import Path

from streamscore.errors import StackError
from streamscore.stack.maven import connector_jar

log = logging.getLogger(__name__)

JAVA_RELEASE = "11"  # the oldest Java Flink 2 runs on


def _sources(*folder: str) -> list[tuple[str, bytes]]:
    found = resources.files("streamscore.job").joinpath(*folder)
    return sorted(
        (entry.name, entry.read_bytes())
        for entry in found.iterdir()
        if entry.name.endswith(".java")
    )


def _jar_name(prefix: str, sources: list[tuple[str, bytes]], extra: list[Path]) -> str:
    digest = hashlib.sha256()
    for name, text in sources:
        digest.update(name.encode() + b"\0" + text + b"\0")
    for jar in extra:
        digest.update(jar.name.encode() + b"\0")
    return f"{prefix}-{digest.hexdigest()[:12]}.jar"


def _flink_classpath() -> list[Path]:
    import pyflink

    home = Path(pyflink.__file__).parent
    jars = sorted(home.glob("lib/*.jar")) + sorted(home.glob("opt/flink-python-*.jar"))
    if not jars:
        raise StackError(f"no Flink jars under {home}: is apache-flink installed?")
    return jars


def operators_jar(directory: Path) -> Path:
    """The operators' jar in ``directory``, compiled there first if it is not there yet."""
    return _built(directory, "streamscore-operators", _sources("jvm"), [])


def kafka_jar(directory: Path) -> Path:
    """The Kafka sink serializer's jar in ``directory``, compiled there first if it is not there
    yet, against the Kafka connector's jar in ``directory`` (``streamscore stack up`` fetches
    it)."""
    connector = connector_jar(directory)
    return _built(directory, "streamscore-kafka", _sources("jvm", "kafka"), [connector])


def _built(
    directory: Path, prefix: str, sources: list[tuple[str, bytes]], extra: list[Path]
) -> Path:
    jar = directory / _jar_name(prefix, sources, extra)
    if jar.exists():
        return jar
    javac = shutil.which("javac")
    if javac is None:
        raise StackError(
            f"{jar.name} is not in {directory} and there is no javac to build it: install a "
            "JDK (make setup does) or put the jar there"
        )
    directory.mkdir(parents=True, exist_ok=True)
    classpath = os.pathsep.join(str(path) for path in _flink_classpath() + extra)
    with tempfile.TemporaryDirectory(prefix="streamscore-jvm-") as scratch:
        work = Path(scratch)
        source_files = []
        for name, text in sources:
            path = work / "src" / name
            path.parent.mkdir(exist_ok=True)
            path.write_bytes(text)
            source_files.append(str(path))
        classes = work / "classes"
        result = subprocess.run(
            [javac, "--release", JAVA_RELEASE, "-Xlint:all", "-Werror",
             "-cp", classpath, "-d", str(classes), *source_files],
            capture_output=True,
            text=True,
            check=False,
        )  # fmt: skip
        if result.returncode != 0:
            raise StackError(f"javac failed:\n{result.stdout}\n{result.stderr}")
        partial = directory / f".{jar.name}.{os.getpid()}"
        with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.writestr("META-INF/MANIFEST.MF", "Manifest-Version: 1.0\r\n\r\n")
            for path in sorted(classes.rglob("*.class")):
                archive.write(path, path.relative_to(classes).as_posix())
        partial.replace(jar)
    log.info("built %s", jar)
    return jar


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    target = Path(sys.argv[1]).resolve()
    print(operators_jar(target))
    print(kafka_jar(target))
