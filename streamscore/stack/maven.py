"""Fetches the stack's jars from Maven Central with ``mvn``; versions are pinned in pom.xml."""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
from pathlib import Path

from streamscore.errors import StackError
from streamscore.resources import maven_pom

log = logging.getLogger(__name__)


def java_major_version() -> int:
    java = shutil.which("java")
    if java is None:
        raise StackError(
            "Java is not installed: install a JDK 17 (e.g. apt-get install openjdk-17-jdk-headless)"
        )
    out = subprocess.run([java, "-version"], capture_output=True, text=True, check=False).stderr
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out)
    if not match:
        raise StackError(f"cannot read the Java version from: {out.strip()}")
    major = int(match.group(1))
    return int(match.group(2)) if major == 1 and match.group(2) else major


def require_java(minimum: int = 17) -> None:
    major = java_major_version()
    if major < minimum:
        raise StackError(f"Java {major} is too old: Kafka 4 and Flink 2 need Java {minimum}+")


def fetch(profile: str, destination: Path, marker: str) -> None:
    """Copy a pom profile's runtime jars into ``destination``, unless ``marker*.jar`` is there."""
    if any(destination.glob(f"{marker}*.jar")):
        return
    mvn = shutil.which("mvn")
    if mvn is None:
        raise StackError("Maven (mvn) is not installed: install it (e.g. apt-get install maven)")
    destination.mkdir(parents=True, exist_ok=True)
    log.info("fetching %s jars from Maven Central into %s", profile, destination)
    result = subprocess.run(
        [
            mvn,
            "-q",
            "-B",
            "-f",
            str(maven_pom()),
            "-P",
            profile,
            "dependency:copy-dependencies",
            f"-DoutputDirectory={destination}",
            "-Dmdep.includeScope=runtime",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0 or not any(destination.glob(f"{marker}*.jar")):
        raise StackError(
            f"Maven fetch of the {profile} jars failed:\n"
            f"{result.stdout[-3000:]}\n{result.stderr[-2000:]}"
        )


def connector_jar(destination: Path) -> Path:
    jars = sorted(destination.glob("flink-sql-connector-kafka-*.jar"))
    if not jars:
        raise StackError(
            f"no Flink Kafka connector jar in {destination}; run `streamscore stack up`"
        )
    return jars[-1]
