"""The job's own JVM operators (``jvm/*.java``), compiled into a jar the job ships with it.

They are small (``batches.py`` says why they exist) and are built from the sources in the
package against the Flink jars of the installed PyFlink, so they always match the Flink they
run in. The jar's name carries a digest of the sources: a changed source builds a new jar, an
unchanged one is built once. Building needs ``javac`` (a JDK 11 or later: ``make setup``
installs one); the Docker image builds the jar when it is made.

    python -m streamscore.job.jvm_jar DIRECTORY   # build (if needed) and print the jar's path
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

log = logging.getLogger(__name__)

JAVA_RELEASE = "11"  # the oldest Java Flink 2 runs on


def _sources() -> list[tuple[str, bytes]]:
    folder = resources.files("streamscore.job") / "jvm"
    return sorted(
        (entry.name, entry.read_bytes())
        for entry in folder.iterdir()
        if entry.name.endswith(".java")
    )


def jar_name() -> str:
    digest = hashlib.sha256()
    for name, text in _sources():
        digest.update(name.encode() + b"\0" + text + b"\0")
    return f"streamscore-operators-{digest.hexdigest()[:12]}.jar"


def _flink_classpath() -> str:
    import pyflink

    home = Path(pyflink.__file__).parent
    jars = sorted(home.glob("lib/*.jar")) + sorted(home.glob("opt/flink-python-*.jar"))
    if not jars:
        raise StackError(f"no Flink jars under {home}: is apache-flink installed?")
    return os.pathsep.join(str(jar) for jar in jars)


def operators_jar(directory: Path) -> Path:
    """The operators' jar in ``directory``, compiled there first if it is not there yet."""
    jar = directory / jar_name()
    if jar.exists():
        return jar
    javac = shutil.which("javac")
    if javac is None:
        raise StackError(
            f"{jar.name} is not in {directory} and there is no javac to build it: install a "
            "JDK (make setup does) or put the jar there"
        )
    directory.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="streamscore-jvm-") as scratch:
        work = Path(scratch)
        source_files = []
        for name, text in _sources():
            path = work / "src" / name
            path.parent.mkdir(exist_ok=True)
            path.write_bytes(text)
            source_files.append(str(path))
        classes = work / "classes"
        result = subprocess.run(
            [javac, "--release", JAVA_RELEASE, "-Xlint:all", "-Werror",
             "-cp", _flink_classpath(), "-d", str(classes), *source_files],
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
    print(operators_jar(Path(sys.argv[1]).resolve()))
