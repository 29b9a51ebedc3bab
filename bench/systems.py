"""The systems under test, behind one small interface the measurements drive.

The scoring job runs once per delivery guarantee; a plain Python pass-through (consumer →
producer copying raw bytes and the input timestamp) is the baseline that shows what Kafka and a
Python client cost on this machine. Each system owns its topics and knows how to start from the
earliest offset, report its state and stop. The job gets every topic it reads or writes of its
own, labels, control and outcomes too, so the label join and the online challenger run as in
production; the pass-through copies events only and has no labels topic.

``passthrough_main`` is the pass-through's process. The child is spawned, so it finds that
function by module and name (``systems.passthrough_main``): it must stay a top-level function
of this module.
"""

from __future__ import annotations

import dataclasses
import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from streamscore.config import DeliveryGuarantee, Settings, parse_overrides
from streamscore.kafka_io import PRODUCER_CONFIG, client_config
from streamscore.stack.kafka import topic_config

from topics import Kafka

# One logger for the whole benchmark, as before the split (its name is in every log line).
log = logging.getLogger("bench")

PASSTHROUGH = "pass-through"
PASSTHROUGH_PARTITIONS = 4
HANDWRITTEN = "hand-written script"


# --- child process (spawned: top-level function only) -----------------------------------------
def passthrough_main(
    kafka: dict[str, Any],
    source: str,
    sink: str,
    batch: int,
    ready: Any,
    stop: Any,
    copied: Any,
) -> None:
    """The baseline: copy raw bytes (key, value, timestamp) from ``source`` to ``sink``.
    ``kafka`` is ``kafka_io.client_config``: the brokers and, if secured, the login."""
    consumer = Consumer(
        {
            **kafka,
            "group.id": f"bench-passthrough-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "fetch.wait.max.ms": 50,
        }
    )
    producer = Producer({**kafka, **PRODUCER_CONFIG})
    partitions = consumer.list_topics(source, timeout=10).topics[source].partitions
    consumer.assign([TopicPartition(source, p, OFFSET_BEGINNING) for p in partitions])
    n = 0
    first = True
    try:
        while not stop.is_set():
            msg = consumer.poll(0.1)
            if first:
                ready.set()
                first = False
            if msg is None:
                producer.poll(0)
                continue
            for m in [msg, *consumer.consume(num_messages=batch - 1, timeout=0)]:
                if m.error():
                    continue
                while True:
                    try:
                        producer.produce(
                            sink, value=m.value(), key=m.key(), timestamp=m.timestamp()[1]
                        )
                        break
                    except BufferError:
                        producer.poll(0.01)
                n += 1
            producer.poll(0)
            copied.value = n
    finally:
        producer.flush(30)
        consumer.close()


# --- systems ----------------------------------------------------------------------------------
@dataclass
class System:
    """What the measurements need from a system under test; the defaults do nothing."""

    name: str
    input_topic: str
    output_topic: str
    record_type: str  # what the output topic carries
    read_committed: bool
    info: dict[str, Any] = field(default_factory=dict)
    labels_topic: str | None = None  # where the load sends labels (None: the system reads none)
    # where it writes the labels it joined, one "outcome" per label (None: it joins none)
    outcomes_topic: str | None = None
    # where it writes the labels it refused, as dead letters (None: it refuses none)
    label_dead_letters_topic: str | None = None

    def setup(self, kafka: Kafka) -> None:
        """Create the system's topics."""

    def start(self) -> None:
        """Start consuming its input topic from the earliest offset."""

    def check(self) -> dict[str, Any]:
        """Its state now (copied into every result, so a measurement shows what ran)."""
        return {}

    def processes(self) -> dict[str, int]:
        """The processes doing its work, by name, for their CPU time and memory."""
        return {}

    def checkpoints_since(self, since_s: float) -> list[dict[str, Any]]:
        """Its checkpoints since ``since_s`` (epoch seconds), if it takes any."""
        return []

    def write_out_totals(self) -> dict[str, float]:
        """Its state write-out counters so far (cumulative: callers take differences)."""
        return {}

    def stop(self) -> None:
        """Stop; a no-op when not running."""


class ChildProcessSystem(System):
    """A baseline that runs in a spawned process of the bench: its entry point takes its own
    arguments, then the ``ready`` and ``stop`` events and a counter it keeps up to date."""

    # What the counter counts (``check``), the process's row in the CPU table (``processes``),
    # and the stack's servers it uses (their CPU counts too).
    counter_name = "count"
    process_name = "child"
    servers: tuple[str, ...] = ("kafka",)

    def __init__(self, s: Settings, ctx: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._s, self._ctx = s, ctx
        self._proc: Any = None
        self._count: Any = None

    def _spawn(self, target: Any, name: str, *leading: Any) -> None:
        self._ready, self._stop = self._ctx.Event(), self._ctx.Event()
        self._count = self._ctx.Value("q", 0, lock=False)
        self._proc = self._ctx.Process(
            target=target,
            name=name,
            daemon=True,
            args=(*leading, self._ready, self._stop, self._count),
        )
        self._proc.start()
        if not self._ready.wait(60):
            raise RuntimeError(f"the {self.name} did not start")

    def check(self) -> dict[str, Any]:
        alive = self._proc is not None and self._proc.is_alive()
        return {"running": alive, self.counter_name: self._count.value if self._proc else 0}

    def processes(self) -> dict[str, int]:
        from process_cost import stack_processes

        stack = {k: v for k, v in stack_processes(self._s).items() if k in self.servers}
        return {self.process_name: self._proc.pid, **stack} if self._proc else stack

    def stop(self) -> None:
        if self._proc is None:
            return
        self._stop.set()
        self._proc.join(40)
        if self._proc.is_alive():
            self._proc.terminate()
            self._proc.join(5)
        self._proc = None
        self.stopped()

    def stopped(self) -> None:
        """What is left to clean up once the process has ended."""


class PassthroughSystem(ChildProcessSystem):
    """The baseline: ``passthrough_main`` in a spawned process."""

    counter_name = "copied"
    process_name = PASSTHROUGH

    def __init__(self, s: Settings, run: str, ctx: Any, batch: int) -> None:
        super().__init__(
            s,
            ctx,
            PASSTHROUGH,
            f"bench-{run}-pt-events",
            f"bench-{run}-passthrough",
            "event",
            read_committed=False,
        )
        self._batch = batch
        self.info = {
            "batch": batch,
            "producer": PRODUCER_CONFIG,
            "partitions": PASSTHROUGH_PARTITIONS,
            "input_topic": self.input_topic,
            "output_topic": self.output_topic,
        }

    def setup(self, kafka: Kafka) -> None:
        kafka.create(self.input_topic, self._s.events_partitions)
        kafka.create(self.output_topic, PASSTHROUGH_PARTITIONS)

    def start(self) -> None:
        self._spawn(
            passthrough_main,
            "bench-passthrough",
            client_config(self._s),
            self.input_topic,
            self.output_topic,
            self._batch,
        )


class HandwrittenSystem(ChildProcessSystem):
    """The hand-written script (``handwritten.py``) in a spawned process: what a user could run
    instead of the job. It reads no labels; its predictions go to a topic of its own and its
    features to Redis under a key prefix of its own."""

    counter_name = "scored"
    process_name = HANDWRITTEN
    servers = ("kafka", "redis")

    def __init__(self, s: Settings, run: str, ctx: Any, model_version: str) -> None:
        super().__init__(
            s,
            ctx,
            HANDWRITTEN,
            f"bench-{run}-hw-events",
            f"bench-{run}-hw-predictions",
            "prediction",
            read_committed=False,
        )
        from handwritten import ScriptConfig

        from streamscore.model.decisions import CostModel
        from streamscore.model.registry import resolve

        password = s.redis_password
        self.config = ScriptConfig(
            kafka=client_config(s),
            source=self.input_topic,
            sink=self.output_topic,
            redis={
                "host": s.redis_host,
                "port": s.redis_port,
                "db": s.redis_db,
                "username": s.redis_username,
                "password": password.get_secret_value() if password is not None else None,
            },
            redis_key_prefix=f"bench-{run}-hw:",
            feature_ttl_s=s.feature_ttl_s,
            model_path=str(resolve(s.models_dir, model_version).model_path),
            model_version=model_version,
            costs=dataclasses.asdict(CostModel.from_settings(s)),
        )
        self.info = {
            "batch": self.config.batch,
            "producer": PRODUCER_CONFIG,
            "input_topic": self.input_topic,
            "output_topic": self.output_topic,
            "redis_key_prefix": self.config.redis_key_prefix,
        }

    def setup(self, kafka: Kafka) -> None:
        kafka.create(self.input_topic, self._s.events_partitions)
        kafka.create(self.output_topic, self._s.predictions_partitions)

    def start(self) -> None:
        from handwritten import script_main

        self._spawn(script_main, "bench-handwritten", self.config)

    def stopped(self) -> None:
        self._delete_features()

    def _delete_features(self) -> None:
        """The script's Redis keys, which are the run's like its topics."""
        import redis

        from streamscore.feature_store import connect

        client = connect(self._s)
        try:
            keys = list(client.scan_iter(f"{self.config.redis_key_prefix}*", count=1000))
            for start in range(0, len(keys), 1000):
                client.unlink(*keys[start : start + 1000])
        except (redis.RedisError, OSError) as exc:
            log.warning("could not delete the hand-written script's Redis keys: %s", exc)
        finally:
            client.close()


class FlinkSystem(System):
    """The scoring job in one delivery guarantee, submitted to the running Flink cluster with
    the bench's topics, job name and consumer group (the user's --set applies too)."""

    def __init__(
        self, s: Settings, run: str, mode: DeliveryGuarantee, user_overrides: list[str]
    ) -> None:
        tag = "eo" if mode is DeliveryGuarantee.EXACTLY_ONCE else "alo"
        prefix = f"bench-{run}-{tag}"
        super().__init__(
            mode.value,
            f"{prefix}-events",
            f"{prefix}-predictions",
            "prediction",
            read_committed=mode is DeliveryGuarantee.EXACTLY_ONCE,
        )
        self.dead_letters = f"{prefix}-dead-letters"
        self.labels_topic = f"{prefix}-labels"
        self.control = f"{prefix}-control"
        self.outcomes_topic = f"{prefix}-outcomes"
        self.label_dead_letters_topic = self.dead_letters
        # The user's --set first, the bench's own after them (later wins).
        self.overrides = [
            *user_overrides,
            f"delivery_guarantee={mode.value}",
            f"job_name={prefix}",
            f"consumer_group={prefix}-{uuid.uuid4().hex[:8]}",
            "start_from=earliest",
            f"topic_events={self.input_topic}",
            f"topic_predictions={self.output_topic}",
            f"topic_dead_letters={self.dead_letters}",
            f"topic_labels={self.labels_topic}",
            f"topic_control={self.control}",
            f"topic_outcomes={self.outcomes_topic}",
        ]
        self.settings = s.with_overrides(parse_overrides(self.overrides))
        self.job_id: str | None = None
        self._kafka: Kafka | None = None
        self.info = {
            "overrides": self.overrides,
            "checkpoint_interval_ms": self.settings.checkpoint_interval_ms,
            "parallelism": self.settings.parallelism,
            "python_execution_mode": self.settings.python_execution_mode,
            # Topic -> its Kafka config, from the stack's rules applied to the bench's names.
            "topics": {t: topic_config(self.settings, t) for t in self._topics()},
        }

    def _topics(self) -> dict[str, int]:
        """Every topic the job reads or writes, with its partitions (all the bench's own)."""
        s = self.settings
        return {
            self.input_topic: s.events_partitions,
            self.labels_topic: s.labels_partitions,
            self.output_topic: s.predictions_partitions,
            self.dead_letters: s.dead_letters_partitions,
            self.control: s.control_partitions,
            self.outcomes_topic: s.outcomes_partitions,
        }

    def setup(self, kafka: Kafka) -> None:
        """Create all the job's topics, each with the config the stack gives it (outputs:
        LogAppendTime; control: compacted, room for model files)."""
        self._kafka = kafka
        for topic, partitions in self._topics().items():
            kafka.create(topic, partitions, topic_config(self.settings, topic))

    def start(self) -> None:
        from streamscore.jobcontrol import submit

        started = time.monotonic()
        self.job_id = submit(self.settings, self.overrides)
        self.info["job_id"] = self.job_id
        self.info["submit_seconds"] = round(time.monotonic() - started, 1)
        log.info(
            "%s: job %s RUNNING after %.0f s", self.name, self.job_id, self.info["submit_seconds"]
        )

    def check(self) -> dict[str, Any]:
        from streamscore.jobcontrol import checkpoints
        from streamscore.stack import flink

        if self.job_id is None:
            return {"running": False}
        job = flink.rest(self.settings, f"/jobs/{self.job_id}")
        exceptions = flink.rest(self.settings, f"/jobs/{self.job_id}/exceptions")
        history = checkpoints(self.settings, self.job_id)
        latest = (history.get("latest") or {}).get("completed") or {}
        return {
            "running": job["state"] == "RUNNING",
            "state": job["state"],
            "exceptions": len(exceptions.get("exceptionHistory", {}).get("entries", [])),
            "checkpoints": history.get("counts", {}),
            # The job's whole state (RocksDB, all operators) in its latest checkpoint.
            "state_size_bytes": latest.get("state_size"),
            # Records in the topics so far (offsets: see Kafka.size).
            "dead_letters": self._kafka.size(self.dead_letters) if self._kafka else None,
            "outcomes": self._kafka.size(self.outcomes_topic) if self._kafka else None,
            "control_records": self._kafka.size(self.control) if self._kafka else None,
        }

    def checkpoints_since(self, since_s: float) -> list[dict[str, Any]]:
        """The job's completed checkpoints triggered at or after ``since_s`` (epoch seconds),
        oldest first: what each cost and where, per task (the first operator of each chain)
        its slowest subtask's phases. ``barrier_ms``: from the trigger until the task had the
        barriers of all its inputs (Flink's start delay plus alignment); a task whose operator
        writes its state before the barrier (the scoring operator, ``write_deferred``) holds
        its records and the barrier back for as long as that takes. ``sync_ms``: the snapshot's
        synchronous part, which holds the task too (RocksDB flushes its memtables into a native
        checkpoint). ``async_ms``: the upload, on a thread of its own. From the REST API's
        checkpoint history (``web.checkpoints.history``)."""
        from streamscore.jobcontrol import checkpoints
        from streamscore.stack import flink

        if self.job_id is None:
            return []
        base = f"/jobs/{self.job_id}"
        tasks = {
            vertex["id"]: vertex["name"].split(" -> ")[0][:60]
            for vertex in flink.rest(self.settings, base)["vertices"]
        }
        history = checkpoints(self.settings, self.job_id).get("history", [])
        found = []
        for checkpoint in sorted(history, key=lambda c: c["id"]):
            if (
                checkpoint["status"] != "COMPLETED"
                or checkpoint["trigger_timestamp"] < since_s * 1000
            ):
                continue
            phases: dict[str, dict[str, int]] = {}
            for vertex_id, task in tasks.items():
                details = flink.rest(
                    self.settings,
                    f"{base}/checkpoints/details/{checkpoint['id']}/subtasks/{vertex_id}",
                )
                subtasks = details.get("subtasks") or []
                if not subtasks:
                    continue
                phases[task] = {
                    "barrier_ms": max(
                        (sub.get("start_delay") or 0)
                        + ((sub.get("alignment") or {}).get("duration") or 0)
                        for sub in subtasks
                    ),
                    "sync_ms": max(
                        (sub.get("checkpoint") or {}).get("sync") or 0 for sub in subtasks
                    ),
                    "async_ms": max(
                        (sub.get("checkpoint") or {}).get("async") or 0 for sub in subtasks
                    ),
                }
            found.append(
                {
                    "id": checkpoint["id"],
                    "trigger_s": round(checkpoint["trigger_timestamp"] / 1000 - since_s, 3),
                    "end_to_end_ms": checkpoint["end_to_end_duration"],
                    "checkpointed_bytes": checkpoint.get("checkpointed_size"),
                    "tasks": phases,
                }
            )
        return found

    def write_out_totals(self) -> dict[str, float]:
        """The scoring operators' write-outs before checkpoint barriers so far, summed over the
        TaskManagers' interpreters (each serves ``/metrics`` on the first free port from
        ``metrics_port``): ``count`` and ``seconds`` of ``streamscore_state_write_seconds`` and
        ``written_ahead`` (``streamscore_state_written_ahead_total``), and the label join's
        reads of Flink's state, ``join_reads_found`` and ``join_reads_absent``
        (``streamscore_join_state_reads_total``). An interpreter outlives a job, so these add
        up over the jobs it ran: take differences."""
        import urllib.error
        import urllib.request

        from prometheus_client.parser import text_string_to_metric_families

        from streamscore.stack.prometheus import METRICS_PORT_TRIES

        wanted = {
            "streamscore_state_write_seconds_count": "count",
            "streamscore_state_write_seconds_sum": "seconds",
            "streamscore_state_written_ahead_total": "written_ahead",
        }
        join_reads = "streamscore_join_state_reads_total"
        totals = dict.fromkeys([*wanted.values(), "join_reads_found", "join_reads_absent"], 0.0)
        s = self.settings
        for port in range(s.metrics_port, s.metrics_port + METRICS_PORT_TRIES):
            url = f"http://{s.metrics_host}:{port}/metrics"
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    text = response.read().decode()
            except (urllib.error.URLError, OSError):
                continue
            for family in text_string_to_metric_families(text):
                for sample in family.samples:
                    if sample.name in wanted:
                        totals[wanted[sample.name]] += sample.value
                    elif sample.name == join_reads:
                        found = sample.labels.get("found") == "true"
                        totals["join_reads_found" if found else "join_reads_absent"] += sample.value
        return totals

    def processes(self) -> dict[str, int]:
        from process_cost import stack_processes

        return stack_processes(self.settings)

    def stop(self) -> None:
        from streamscore.jobcontrol import cancel

        if self.job_id is not None:
            try:
                self.info["final"] = self.check()
            except Exception as exc:
                log.warning("%s: could not read the job's state: %s", self.name, exc)
            cancel(self.settings, self.job_id)
            log.info("%s: job %s cancelled", self.name, self.job_id)
            self.job_id = None
