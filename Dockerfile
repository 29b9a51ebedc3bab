# One image for everything in the stack that is ours: the Flink JobManager and TaskManager, and
# the `streamscore` CLI that trains the model and submits the job. It is built like the local
# stack (streamscore/stack/): the PyFlink wheel is the Flink distribution, Java 17 comes from
# Debian, the Kafka connector jar from Maven Central (pinned in streamscore/stack/pom.xml), and
# the job's own JVM operators are compiled from the package's sources (streamscore/job/jvm_jar.py).
#
#   docker build --platform linux/amd64 -t streamscore:0.1.0 .
#
# The command picks the role (Flink's bin/ and the venv are on PATH):
#   jobmanager.sh start-foreground | taskmanager.sh start-foreground | streamscore <command>
# Flink's config.yaml is not baked in: docker-compose.yml and infra/k8s/ mount it at
# $FLINK_CONF_DIR/config.yaml.
#
# linux/amd64 only: apache-flink 2.3.0 publishes no aarch64 wheel.

ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

# --- Python 3.11 + Java 17: the runtime base ---------------------------------------------------
FROM ${PYTHON_IMAGE} AS base
# Slim images lack man1, which the JRE's postinst writes to; libgomp1 is LightGBM's OpenMP runtime.
RUN mkdir -p /usr/share/man/man1 \
 && apt-get update \
 && apt-get install -y --no-install-recommends openjdk-17-jre-headless libgomp1 \
 && rm -rf /var/lib/apt/lists/*

# --- the Flink Kafka connector jar, fetched with the local stack's pom ---------------------------
FROM base AS jars
RUN apt-get update \
 && apt-get install -y --no-install-recommends maven \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY streamscore/stack/pom.xml pom.xml
RUN mvn -B -q -f pom.xml -P flink-connector dependency:copy-dependencies \
        -DoutputDirectory=/opt/streamscore/jars/flink -Dmdep.includeScope=runtime

# --- the virtualenv: the pins of pyproject.toml, then the project --------------------------------
FROM ${PYTHON_IMAGE} AS venv
# A compiler for the sdists in the dependency tree (apache-beam's crcmod has a C extension).
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential \
 && rm -rf /var/lib/apt/lists/*
ENV PATH=/opt/venv/bin:$PATH PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
WORKDIR /opt/streamscore/app
# Dependencies in their own layer, so a code change does not reinstall them.
COPY pyproject.toml ./
RUN python -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; print('\n'.join(p['dependencies'] + p['optional-dependencies']['online']))" \
        > /tmp/requirements.txt \
 && pip install -r /tmp/requirements.txt
COPY README.md setup.py ./
COPY streamscore ./streamscore
# A wheel, installed like any user's: schemas, the job entry point and the pom are package data
# read through importlib.resources, so nothing needs the source tree after this step. Building
# it compiles the scoring path with mypyc and Cython (setup.py; build-essential above is their
# compiler).
RUN pip wheel --no-deps -w /tmp/wheels . \
 && pip install --no-deps /tmp/wheels/streamscore-*.whl \
 && rm -rf /tmp/wheels build

# --- the job's own JVM classes (streamscore/job/jvm/), compiled against the installed PyFlink ---
FROM venv AS operators
RUN mkdir -p /usr/share/man/man1 \
 && apt-get update \
 && apt-get install -y --no-install-recommends openjdk-17-jdk-headless \
 && rm -rf /var/lib/apt/lists/*
# The Kafka sink's serializer is compiled against the connector's jar (job/jvm_jar.py kafka_jar).
COPY --from=jars /opt/streamscore/jars/flink/ /opt/streamscore/jars/flink/
RUN python -m streamscore.job.jvm_jar /opt/streamscore/jars/flink

# --- the image ---------------------------------------------------------------------------------
FROM base
# Paths follow StackLayout with the state dir /opt/streamscore, so the CLI finds the connector
# jar, the lib dir and config.yaml where `streamscore stack up` would have put them.
ENV VIRTUAL_ENV=/opt/venv \
    FLINK_HOME=/opt/venv/lib/python3.11/site-packages/pyflink \
    FLINK_LIB_DIR=/opt/streamscore/flink/lib \
    FLINK_CONF_DIR=/opt/streamscore/flink/conf \
    FLINK_LOG_DIR=/opt/streamscore/logs \
    FLINK_PID_DIR=/opt/streamscore/pids \
    STREAMSCORE_STATE_DIR=/opt/streamscore \
    STREAMSCORE_MODELS_DIR=/opt/streamscore/models \
    PYTHONUNBUFFERED=1
ENV PATH=/opt/venv/bin:$FLINK_HOME/bin:$PATH
COPY --from=venv /opt/venv /opt/venv
COPY --from=jars /opt/streamscore/jars /opt/streamscore/jars
COPY --from=operators /opt/streamscore/jars/flink/ /opt/streamscore/jars/flink/
# FLINK_HOME must be the installed pyflink package as flink_home() computes it, and the lib dir is
# made by the local stack's own build_lib_dir() (the wheel's lib/ jars plus opt/flink-python, as
# links); the build fails if either disagrees with the ENV above. The log4j/logback files are the
# ones write_config() copies next to config.yaml.
RUN python -c "import os; from streamscore.stack.flink import flink_home; home = str(flink_home()); assert home == os.environ['FLINK_HOME'], home" \
 && python -c "import os, pathlib; from streamscore.stack.flink import build_lib_dir; from streamscore.stack.layout import StackLayout; lib = str(build_lib_dir(StackLayout(pathlib.Path(os.environ['STREAMSCORE_STATE_DIR'])))); assert lib == os.environ['FLINK_LIB_DIR'], lib" \
 && mkdir -p "$FLINK_CONF_DIR" \
 && cp "$FLINK_HOME"/conf/log4j*.properties "$FLINK_HOME"/conf/logback*.xml "$FLINK_CONF_DIR"/

# Non-root; the user owns only what the processes write (compose/k8s mount volumes over some).
# The uid is fixed because infra/k8s/ runs the pods as 10001.
RUN useradd --uid 10001 --user-group --create-home streamscore \
 && cd /opt/streamscore \
 && mkdir -p logs pids models flink/tmp flink/web flink/blobs flink/checkpoints flink/savepoints \
 && chown -R streamscore:streamscore logs pids models flink/tmp flink/web flink/blobs \
        flink/checkpoints flink/savepoints
USER 10001:10001
WORKDIR /opt/streamscore

# Flink RPC, blob server, REST/web UI, Flink's Prometheus reporter, the job's own /metrics.
EXPOSE 6123 6124 8081 9249 9260
CMD ["streamscore", "--help"]
