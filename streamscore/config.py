"""The one typed configuration of streamscore.

Every component (stack, job, trainer, CLI, benchmark) reads its settings from ``Settings``, so a
value is defined once. Each field can be overridden by an environment variable named
``STREAMSCORE_<FIELD>`` (e.g. ``STREAMSCORE_CHECKPOINT_INTERVAL_MS=2000``) and by the CLI's
``--set field=value`` option, which wins over the environment.

Paths (``state_dir``, ``models_dir``) are relative to the directory a command runs in, like
MLflow's ``mlruns``: ``streamscore stack up`` in a project folder keeps that folder's stack in
``./.stack``. They are made absolute when the settings are built, so a job shipped to Flink and
a child process see the same folders.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from streamscore.errors import ConfigError

SET_OPTION_HELP = "Override a setting (repeatable); env vars STREAMSCORE_<FIELD> work too."
# Settings that are secrets (SecretStr): hidden in ``as_dict``, and never put on a command line
# or into a Flink job graph; the job reads them from its TaskManagers' environment instead
# (``STREAMSCORE_<FIELD>``, see ``Settings.secret_environment`` and ``with_secrets_from_env``).
# Keep "password" (or "secret", "token") in their names: PyFlink's client logs the environment of
# the job script it starts, with the values of such names hidden.
SECRET_FIELDS = ("redis_password", "kafka_sasl_password")


class DeliveryGuarantee(StrEnum):
    EXACTLY_ONCE = "exactly-once"
    AT_LEAST_ONCE = "at-least-once"


class Settings(BaseSettings):
    # hide_input_in_errors: a validation error would otherwise quote the input, secrets included.
    model_config = SettingsConfigDict(
        env_prefix="STREAMSCORE_", frozen=True, extra="forbid", hide_input_in_errors=True
    )

    # Where the local stack keeps every data dir, log, pid file and checkpoint (git-ignored).
    state_dir: Path = Path(".stack")

    # Kafka
    kafka_host: str = "127.0.0.1"
    kafka_port: int = 9092
    kafka_controller_port: int = 9093
    kafka_heap: str = "512m"
    # The broker's JVM compiles with C1 only (-XX:TieredStopAtLevel=1), as Flink's can
    # (flink_jit_c1_only). On the shared 2-core box its C2 compiler took about 0.14 of a core
    # through each drain after a start: with C1 only the broker spent 9.7-13.6 µs of CPU per event
    # instead of 21.6-28.5, in 300,000-event drains (bench/HISTORY.md, twenty-fourth
    # session). False for a broker on cores of its own. docker-compose.yml and infra/k8s/ set
    # the same through KAFKA_OPTS.
    kafka_jit_c1_only: bool = True
    topic_events: str = "events"
    topic_labels: str = "labels"
    topic_predictions: str = "predictions"
    topic_dead_letters: str = "dead-letters"
    # Compacted: the latest model assignment and challenger snapshot, read back by the job.
    topic_control: str = "model-control"
    # Predictions joined with their labels (written by the job; the learner and the quality
    # readouts read them).
    topic_outcomes: str = "outcomes"
    events_partitions: int = Field(4, ge=1)
    labels_partitions: int = Field(2, ge=1)
    predictions_partitions: int = Field(4, ge=1)
    dead_letters_partitions: int = Field(1, ge=1)
    control_partitions: int = Field(1, ge=1, le=1)  # one partition: commands stay in order
    outcomes_partitions: int = Field(2, ge=1)
    # Kafka security: PLAINTEXT (the default, for a broker on loopback) or SASL_SSL, i.e.
    # SCRAM-SHA-512 over TLS, which needs all of username, password and the CA (a PEM file) that
    # signed the brokers' certificates. Every Python client takes them from
    # ``kafka_io.client_config``; the job's Kafka connector gets all but the password
    # (``kafka_io.connector_properties``): its JVMs read the credentials from a JAAS file given
    # by the cluster (``-Djava.security.auth.login.config``, as the local stack does).
    # The password is a secret (``SECRET_FIELDS``): pass it as STREAMSCORE_KAFKA_SASL_PASSWORD
    # rather than ``--set`` (a command line is visible to every local user), and a cluster's
    # TaskManagers need it in their environment (the local stack puts it there).
    kafka_security_protocol: Literal["PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["SCRAM-SHA-512"] = "SCRAM-SHA-512"
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_ca_location: Path | None = None

    # Redis (the online feature store)
    redis_host: str = "127.0.0.1"
    redis_port: int = 6379
    # With ``redis_username`` the server has an ACL user of that name (the local stack turns its
    # default user off); without it ``redis_password`` is the default user's (requirepass).
    # The password is a secret like Kafka's: STREAMSCORE_REDIS_PASSWORD in the environment of
    # whoever connects, the job's TaskManagers included.
    redis_username: str | None = Field(None, pattern=r"^[^\s]+$")
    redis_password: SecretStr | None = None
    redis_db: int = 0
    redis_key_prefix: str = "streamscore:features:"
    feature_ttl_s: int = Field(2 * 86400, ge=1)
    redis_flush_max_records: int = Field(2000, ge=1)
    redis_flush_interval_ms: int = Field(20, ge=1)
    # While the job catches up on a backlog (the scoring operator's batches are full), the
    # feature writes go out this often instead, each user's newest (feature_store.FlushPace).
    redis_catch_up_flush_interval_ms: int = Field(1000, ge=1)
    # Users whose newest feature write is kept while Redis is unreachable, to be written when it
    # is back; past it the oldest pending user is dropped and counted (dropped_pending).
    redis_pending_max_users: int = Field(100_000, ge=1)

    # Flink cluster
    flink_rest_host: str = "127.0.0.1"
    flink_rest_port: int = 8081
    flink_rpc_port: int = 6123
    # Several single-slot TaskManagers, not one with several slots: each has its own Python
    # interpreter (thread mode), so the scoring subtasks and the learner run on interpreters of
    # their own (one Python operator per TaskManager; see job/functions.py). The job needs
    # scoring_parallelism + 1 slots; the third TaskManager is a spare that takes over at once
    # when one is lost (tests/e2e/test_chaos.py), while the supervisor restarts the lost one.
    flink_taskmanagers: int = Field(3, ge=1)
    flink_taskmanager_slots: int = Field(1, ge=1)
    flink_jobmanager_memory: str = "1024m"
    # Each TaskManager's process size. 3072m rather than 1536m: in alternating 1,000,000-event
    # drains of the fiftieth session, 11.5 % faster exactly once and 20.6 % at least once on the
    # means of two pairs (the scoring TaskManager spent 65-72 µs of CPU per event against 75-76),
    # for about 0.6 GB more peak RSS in each of the two busy TaskManagers (bench/HISTORY.md).
    # What pays is the managed memory (RocksDB's block cache and write buffers, 1,004 MiB against
    # 435): in the fifty-first session's alternating drains the heap alone (managed 435m, the rest
    # heap) was the slowest at least once, and the managed memory alone (a 2304m process with
    # taskmanager.memory.task.heap.size 288m and taskmanager.memory.managed.size 1004m, through
    # flink_extra_config) drained as fast with 0.55-0.6 GB less RSS, but at 5,000 events/s at
    # least once its p99 was worse in every pair (its small heap is collected twice as often).
    flink_taskmanager_memory: str = "3072m"
    # Flink's JVMs compile with C1 only (-XX:TieredStopAtLevel=1), not C1 then C2. On 2 cores C2
    # drains a backlog faster exactly once (+8.8 % and +8.9 % in alternating runs of the
    # thirty-fifth and thirty-sixth sessions; at least once +4.1 % and -1.3 %), but at 5,000
    # events/s at least once, after a 300,000-event drain, the p99 was 66-73 ms with C2 and 43-45
    # ms with C1 only in alternating runs (the bar is 50), the checkpoints' asynchronous part
    # twice as long (bench/HISTORY.md, thirty-sixth session). C1 only is the default for that
    # latency; false for C2 where draining backlogs matters more, or with cores to spare.
    flink_jit_c1_only: bool = True
    # The TaskManagers' JVMs touch every page of their heap at start (-XX:+AlwaysPreTouch),
    # rather than on first use. With 3072m TaskManagers the heap is about 1.1 GB, and a drain
    # kept finding pages it had never used: the kernel zeroing them was 6.5 % of the scoring
    # thread's CPU samples mid-drain, 1.4 % with the heap touched at start (its page faults from
    # 26,029 in 6 s to 7,925 in 10 s; bench/HISTORY.md, fifty-second session). Each TaskManager
    # holds its whole heap from the start (about 1.5 GB RSS idle instead of 0.5); false to give
    # that memory back to smaller machines, at that cost in the first minutes of work.
    flink_taskmanager_pretouch: bool = True
    # Extra JVM flags for every Flink process of the local stack (GC tuning, a profiler agent:
    # bench/README.md shows async-profiler), appended after the wheel's own flags.
    flink_extra_java_opts: str = ""
    # Extra keys for the local stack's Flink config.yaml, over the stack's own (e.g. RocksDB
    # options, state.backend.rocksdb.*); as JSON in STREAMSCORE_FLINK_EXTRA_CONFIG.
    flink_extra_config: dict[str, str] = Field(default_factory=dict)
    flink_prometheus_port: str = "9249-9259"

    # The scoring job
    job_name: str = "streamscore-scoring"
    parallelism: int = Field(1, ge=1)  # the control and outcomes sources
    # The events and labels source, the scoring operator (decode, features, model, Redis) and its
    # sink run at this parallelism, one of each per slot. The job needs scoring_parallelism + 1 (the
    # learner) slots (see flink_taskmanagers). One on a 2-core machine, for the latency: in
    # alternating 1,000,000-event drains of the forty-third session two drained 17 % faster
    # exactly once and 12 % faster at least once (the box's CPU then all used, the learner
    # waiting for it), but at 5,000 events/s at least once their p99 was 55 and 70 ms against 36
    # and 38 with one (the bar is 50), and 50 and 64 with buffer_timeout_ms=1 (bench/HISTORY.md).
    # Two where draining backlogs matters more than that tail, with a fourth TaskManager to keep
    # a spare; raise it with the cores.
    scoring_parallelism: int = Field(1, ge=1)
    # A full collection of the TaskManager interpreter's cyclic garbage collector every this many
    # generation-1 collections (CPython: 10). Full collections walk every cached user's state;
    # see job/interpreter.py for what they cost.
    python_gc_full_collection_every: int = Field(100, ge=1)
    # At each checkpoint the scoring interpreter's surviving objects are frozen out of the
    # collector's sight; every this many checkpoints they are handed back and collected once
    # (job/interpreter.py, SurvivorFreeze). 720: an hour at the default 5 s interval.
    python_gc_sweep_every_checkpoints: int = Field(720, ge=1)
    # The scoring interpreter's young collections: one only after this many more tracked objects
    # were made than freed (CPython: 700). Its survivors are frozen after every batch
    # (job/interpreter.py, SurvivorFreeze), so set above what one batch makes, no young
    # collection walks them; below it, collections run within a batch as before.
    python_gc_young_threshold: int = Field(100_000, ge=1)
    # How long a thread of the scoring interpreter waiting for the GIL waits before it asks the
    # holder to hand it over (sys.setswitchinterval; CPython's default is 5 ms). Each call of the
    # scoring thread into the JVM releases the GIL; the feature store's writer takes it
    # meanwhile, and the scoring thread, back from the JVM, waited for it up to this long
    # (job/interpreter.py; bench/HISTORY.md, eighteenth session).
    python_switch_interval_ms: float = Field(0.5, gt=0, le=100)
    # The scoring task thread and the other threads of its interpreter take a real-time
    # round-robin policy (SCHED_RR) at this priority at the job's first checkpoint, so that the
    # stack's other threads do not take the scoring thread's core while it drains
    # (job/thread_priority.py; bench/HISTORY.md, sixteenth session). Needs CAP_SYS_NICE or
    # `ulimit -r`; refused, they keep the normal policy and the log says so. 0: never.
    scoring_thread_realtime_priority: int = Field(1, ge=0, le=99)
    # With it, the JVM threads that feed the scoring task in its TaskManager (the Kafka source
    # tasks and their fetchers) take the same policy, so that its batches do not wait for a CPU
    # behind the rest of the stack (job/thread_priority.py; bench/HISTORY.md, seventeenth
    # session).
    scoring_feeders_realtime: bool = True
    # Run the scoring path from its Python sources rather than its mypyc build (native.py): for
    # a same-commit comparison or a debugger. Read when the package is imported, from
    # STREAMSCORE_PURE_PYTHON; `stack up` hands it on to the TaskManagers.
    pure_python: bool = False
    # Users whose state each scoring subtask keeps in Python in front of Flink's keyed state
    # (job/state.py UserStateCache): a hit spares a JVM call, a RocksDB read and an unpickle.
    # Least recently used go first; 0 turns the cache off.
    state_cache_users: int = Field(50_000, ge=0)
    # A user the scoring operator has never seen (not in its state when it opened, not written
    # since) is new without a read of Flink's state (job/state.py KnownUsers): with many users
    # most events are a user's first, and each such read was a call into the JVM and a RocksDB
    # miss. A Bloom filter; this share of the users it has not seen read the state all the same.
    # 0 turns it off (every user not cached is read).
    state_known_users_error: float = Field(0.01, ge=0, lt=1)
    # Pending outcomes (scored events awaiting their label) each scoring subtask also keeps in
    # Python (job/state.py JoinMap), so a label that finds its event pending reads no state.
    pending_cache_outcomes: int = Field(200_000, ge=0)
    # Users' state changes wait in Python and are written to Flink's keyed state once per checkpoint
    # (before its barrier), each changed user once (job/state.py; bench/HISTORY.md, seventh
    # session); the label join's changes too, or when this many of them wait (then only they are
    # written: ScoringOperator.write_join_changes). 0 writes every change at once (the cost per
    # record of a key switch, a pickle and a RocksDB write, each time).
    state_write_behind_max: int = Field(100_000, ge=0)
    # Users' changed state and label-join entries wait for the barrier, whose write-out holds up
    # every record behind it. From state_write_ahead_ms before the next barrier is due (the last one
    # plus checkpoint_interval_ms), while the scoring operator keeps up (its batches not full:
    # cut by their wait, not by scoring_batch_max_records), it writes them after each batch
    # instead, at most state_write_ahead_users users per batch, those changed longest ago first;
    # a user that changes again is written again (ScoringOperator.write_ahead; bench/HISTORY.md,
    # eleventh and twenty-ninth sessions). Draining a backlog (full batches), each changed user
    # is written once, at the barrier. 0 users turns it off. 100 users over 2 s rather than 200
    # over 1 s (thirty-second session): a quarter more writes at 5,000 events/s, but in slices
    # short enough that the batches behind them wait little (at-least-once p99 45-46 ms against
    # 50-54).
    state_write_ahead_users: int = Field(100, ge=0)
    state_write_ahead_ms: int = Field(2_000, ge=0)
    # A diagnostic for the benchmark, never for production: the scoring operator cut down to a
    # floor of the job's per-event work (job/floor.py), so that a drain measures what the
    # topology itself costs and what each step of that work adds (bench/README.md, "The
    # topology's floor"). "decode": each record decoded and checked, each event answered with a
    # fixed prediction; "features": and its user's features; "score": and the champion's score
    # and decision. None of them keeps Flink state, joins labels or writes to Redis. "off": the job.
    scoring_floor: Literal["off", "decode", "features", "score"] = "off"
    # The scoring operator and the learner are called once per batch of records, not per record
    # (job/batches.py): a batch is handed on when it has this many records, when its first has
    # waited long enough, before each watermark and before each checkpoint barrier. The scoring
    # operator's batches wait max_wait_ms while it is busy under a quarter of the time and
    # busy_wait_ms from half of it on, in proportion between (job/load.py, jvm/BatchWait.java):
    # near the box's capacity larger batches cost less per record (bench/HISTORY.md, eleventh
    # session), at light load a short wait keeps latency down. The learner's wait is
    # max_wait_ms. Both equal: a fixed wait; both 0: every record alone (the per-record path).
    scoring_batch_max_records: int = Field(500, ge=1)
    # The model scores a batch's events in one call per model (job/scoring.py, _score_unscored:
    # its trees stay in the CPU's caches from one event to the next), the scores equal bit for bit
    # to one call per event. Off: each event is scored as it is read, as before (to compare them).
    scoring_scores_per_batch: bool = True
    scoring_batch_max_wait_ms: int = Field(5, ge=0)
    scoring_batch_busy_wait_ms: int = Field(20, ge=0)
    delivery_guarantee: DeliveryGuarantee = DeliveryGuarantee.EXACTLY_ONCE
    checkpoint_interval_ms: int = Field(5000, ge=100)
    # RocksDB's compression per level (Flink's state.backend.rocksdb.compression.per.level). A
    # checkpoint flushes RocksDB's memtables into level 0 on the task's own thread, holding up every
    # record behind it: written uncompressed (levels 0 and 1), that flush took half as long
    # (bench/HISTORY.md, tenth session), for checkpoints 2.5-3 times as large at 10,000 users; the
    # levels below, where a large state lives, stay compressed by the background compactions.
    # RocksDB's own default is SNAPPY_COMPRESSION on every level.
    rocksdb_compression_per_level: str = "NO_COMPRESSION;NO_COMPRESSION;SNAPPY_COMPRESSION"
    # Bloom filters in RocksDB's files (Flink's state.backend.rocksdb.use-bloom-filter, 10 bits a
    # key): a read of a key that is not there (a label whose event has not come yet, looked up in
    # the join's map state) skips every file instead of searching each one's index and block.
    rocksdb_bloom_filter: bool = True
    # The scoring operator's LightGBM models compiled to machine code by lleaves, off the scoring
    # thread at each model load (1-2 s of CPU for 200 trees), and used once their scores equal
    # LightGBM's to the bit on probe rows; LightGBM scores until then, and for good if they do
    # not (model/compiled_forest.py). A quarter of LightGBM's time per row in batches outside
    # Flink, about half in a drain, where the compiled code leaves the caches between batches.
    model_compile_trees: bool = True
    # The job's Kafka sinks' producers: batch.size and linger.ms. Exactly once, the sink flushes
    # its producer before each checkpoint barrier and the scoring task waits for that flush: in a
    # drain about a second of every eight with these defaults, none with 262144-byte batches,
    # yet those drains were no faster (bench/HISTORY.md, twenty-fourth session).
    sink_batch_bytes: int = Field(16_384, ge=1)
    sink_linger_ms: int = Field(5, ge=0)
    # How long a partly filled network buffer may wait before it is sent on (Flink's default is
    # 100 ms, which a record pays at each shuffle when the stream is not busy enough to fill
    # buffers: at-least-once latency). A full buffer goes at once, so draining is unaffected.
    buffer_timeout_ms: int = Field(10, ge=1)
    transaction_timeout_ms: int = Field(600_000, ge=1000, le=900_000)
    max_out_of_orderness_ms: int = Field(5_000, ge=0)
    # Events stamped further ahead of the wall clock are dead letters (invalid:event_time); the
    # events and labels topics also refuse records whose Kafka timestamp is that far ahead.
    max_event_ahead_ms: int = Field(300_000, ge=0)
    # Events and labels larger than this are dead letters (too_large, label:too_large), refused
    # before decoding. Ours are ~150 bytes (an event) and ~60 (a label): 64 KiB leaves room for
    # producers that add fields, and bounds what one bad record can cost the decoder.
    max_record_bytes: int = Field(65_536, ge=1024)
    allowed_lateness_ms: int = Field(60_000, ge=0)
    source_idleness_ms: int = Field(10_000, ge=1)
    # Watermark alignment of the events and labels source (Flink's split-level alignment): a
    # partition whose watermark is more than this ahead of the slowest active partition's waits
    # until the others catch up. Labels are stamped with their label time, which is after their
    # event's time, so a label is read once the events have been read up to this long before
    # its label time: in a backlog the labels topic (small records, many per fetch) no longer
    # runs ahead of its events, which parked labels in state and read their events' entries
    # back from RocksDB. When the events stop, the last labels wait ``source_idleness_ms``.
    # 0 turns it off.
    source_alignment_drift_ms: int = Field(1_000, ge=0)
    # The job's Kafka sources ask the broker for at least this many bytes per fetch, or for what
    # there is after this long (the Kafka consumer's fetch.min.bytes and fetch.max.wait.ms).
    source_fetch_min_bytes: int = Field(1, ge=1)
    source_fetch_max_wait_ms: int = Field(500, ge=0)
    python_execution_mode: str = "thread"
    consumer_group: str = "streamscore-scoring"
    start_from: str = Field("earliest", pattern="^(earliest|latest|group-offsets)$")
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 9260

    # Health (streamscore/monitoring/): drift against the model's training reference over
    # sliding windows of event time, and the local stack's Prometheus, which scrapes the job's
    # ``metrics_port`` range and Flink's reporter ports and evaluates monitoring/rules.yml.
    drift_windows_s: tuple[int, ...] = Field((300, 3600), min_length=1)
    drift_min_events: int = Field(300, ge=1)
    prometheus_host: str = "127.0.0.1"
    prometheus_port: int = 9090
    prometheus_scrape_interval_s: int = Field(5, ge=1)
    prometheus_retention: str = "2d"

    # Model and decisions
    models_dir: Path = Path("models")
    # The MLflow model registry (model/mlflow_registry.py): a tracking server's URI, or None for
    # a local file store at <models_dir>/mlruns, so nothing extra has to run.
    mlflow_tracking_uri: str | None = None
    model_version: str = "latest"
    review_threshold: float = Field(0.5, ge=0.0, le=1.0)
    decline_threshold: float = Field(0.85, ge=0.0, le=1.0)
    # Costs of the cost-based decisions (streamscore/model/decisions.py), in the unit of the
    # amounts (EUR for card payments; amounts are not converted between currencies). A missed
    # fraud costs its amount. The defaults are plausible for card payments in EUR:
    # Declining an honest customer: a fixed part (a share of them call support at ~5-8 € a
    # contact, some move the card off the top of their wallet) ...
    cost_false_decline_fixed: float = Field(2.0, ge=0.0)
    # ... plus a share of the amount: about a third of falsely declined buyers abandon the
    # purchase, at a gross margin of ~30 % (lost interchange is far smaller, 0.2-0.3 %).
    cost_false_decline_rate: float = Field(0.10, ge=0.0, le=1.0)
    # An analyst's review: ~3 minutes at a loaded ~60 €/h.
    cost_review: float = Field(3.0, ge=0.0)
    # Share of reviewed fraud the analyst still lets through (reviews catch most fraud).
    cost_review_miss_rate: float = Field(0.10, ge=0.0, le=1.0)
    # A review of an honest customer (held order, a step-up call) costs this share of what
    # declining them would: most pass with a delay, a few give up.
    cost_review_friction_share: float = Field(0.10, ge=0.0, le=1.0)

    # The ML loop: labels joined in the job, the online challenger, canaries.
    # A label later than this after its event is a dead letter (label:expired); what learning
    # needs of an event is kept in the user's state until its label arrives or this passes.
    label_horizon_ms: int = Field(600_000, ge=1_000)
    # Unlabelled events kept per user at most; past it the oldest is dropped and counted.
    max_pending_labels_per_user: int = Field(200, ge=1)
    # The challenger publishes a snapshot to the control topic after this many new labels, and
    # at least this long after the previous one (model/publish_cadence.py: a backlog's labels
    # publish dozens a second, each loaded by every scorer); 0, the default: the count alone.
    # Not on by default: drains with 1000 ran slower, for a reason not found (bench/HISTORY.md,
    # twenty-first session).
    challenger_publish_every: int = Field(200, ge=1)
    challenger_publish_min_interval_ms: int = Field(0, ge=0)
    # Live quality: the last N joined labels per model (and per canary arm).
    quality_window_labels: int = Field(10_000, ge=100)
    # Automatic rollback of a canary: the candidate's net value per labelled event falls below
    # the champion's by more than this (in the cost unit), once both arms have this many labels.
    rollback_margin: float = Field(0.05, ge=0.0)
    rollback_min_labels: int = Field(500, ge=10)

    @field_validator("state_dir", "models_dir")
    @classmethod
    def _absolute(cls, path: Path) -> Path:
        return path.expanduser().resolve()

    @field_validator("kafka_ssl_ca_location")
    @classmethod
    def _absolute_file(cls, path: Path | None) -> Path | None:
        """Absolute, like the folders: the job's JVMs read the same file (see module doc)."""
        return None if path is None else path.expanduser().resolve()

    @field_validator("drift_windows_s", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        """``--set drift_windows_s=300,3600`` and ``STREAMSCORE_DRIFT_WINDOWS_S=300,3600``."""
        if isinstance(value, str) and not value.lstrip().startswith("["):
            return tuple(int(part) for part in value.split(",") if part.strip())
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        if self.kafka_security_protocol == "SASL_SSL":
            missing = [
                name
                for name in ("kafka_sasl_username", "kafka_sasl_password", "kafka_ssl_ca_location")
                if getattr(self, name) is None
            ]
            if missing:
                raise ValueError(f"kafka_security_protocol SASL_SSL needs {', '.join(missing)}")
        if self.review_threshold > self.decline_threshold:
            raise ValueError("review_threshold must not exceed decline_threshold")
        if self.cost_false_decline_fixed == 0 and self.cost_false_decline_rate == 0:
            raise ValueError(
                "cost_false_decline_fixed and cost_false_decline_rate are both 0: declining "
                "would be free, so every transaction with any fraud risk would be declined"
            )
        if self.scoring_batch_busy_wait_ms < self.scoring_batch_max_wait_ms:
            raise ValueError(
                f"scoring_batch_busy_wait_ms ({self.scoring_batch_busy_wait_ms}) must not be "
                f"below scoring_batch_max_wait_ms ({self.scoring_batch_max_wait_ms}): a busy "
                "operator's batches wait longer, not less"
            )
        from streamscore.features.definitions import FEATURE_SET

        delay = self.max_out_of_orderness_ms + self.allowed_lateness_ms
        if delay > FEATURE_SET.retention_slack_ms:
            raise ValueError(
                f"max_out_of_orderness_ms + allowed_lateness_ms = {delay} exceeds the feature "
                f"set's retention slack ({FEATURE_SET.retention_slack_ms} ms): late events "
                "would see incomplete windows"
            )
        return self

    @property
    def kafka_sasl_ssl(self) -> bool:
        return self.kafka_security_protocol == "SASL_SSL"

    @property
    def kafka_bootstrap(self) -> str:
        return f"{self.kafka_host}:{self.kafka_port}"

    @property
    def flink_rest_url(self) -> str:
        return f"http://{self.flink_rest_host}:{self.flink_rest_port}"

    @property
    def prometheus_url(self) -> str:
        return f"http://{self.prometheus_host}:{self.prometheus_port}"

    def topic_partitions(self) -> dict[str, int]:
        return {
            self.topic_events: self.events_partitions,
            self.topic_labels: self.labels_partitions,
            self.topic_predictions: self.predictions_partitions,
            self.topic_dead_letters: self.dead_letters_partitions,
            self.topic_control: self.control_partitions,
            self.topic_outcomes: self.outcomes_partitions,
        }

    def with_overrides(self, overrides: dict[str, Any]) -> Settings:
        """A copy with ``overrides`` applied and validated like any other source."""
        merged = {**self.model_dump(), **overrides}
        return Settings(**merged)

    def as_dict(self) -> dict[str, Any]:
        """Settings as plain JSON-able values, secrets hidden."""
        data = self.model_dump(mode="json")
        for name in SECRET_FIELDS:
            if getattr(self, name) is not None:
                data[name] = "**********"
        return data

    def secret_environment(self) -> dict[str, str]:
        """The secrets that are set, as the ``STREAMSCORE_<FIELD>`` variables that carry them to
        another process (``flink run``'s client, the TaskManagers): an environment is private to
        its process and its user, where a command line or a job graph is not."""
        env: dict[str, str] = {}
        for name in SECRET_FIELDS:
            secret: SecretStr | None = getattr(self, name)
            if secret is not None:
                env[f"STREAMSCORE_{name.upper()}"] = secret.get_secret_value()
        return env

    def without_secrets(self) -> Settings:
        """A copy with every secret unset: what may be pickled into a Flink job graph, where
        anyone who can read the job (its REST API, a savepoint, the blob store) could read it.
        Not validated again: SASL_SSL without its password is expected here."""
        return self.model_copy(update=dict.fromkeys(SECRET_FIELDS))

    def with_secrets_from_env(self, environ: Mapping[str, str] | None = None) -> Settings:
        """A copy whose unset secrets are read from ``STREAMSCORE_<FIELD>`` in ``environ`` (this
        process's environment by default): how the job's functions get back what
        ``without_secrets`` took out, on the TaskManager that runs them."""
        source = os.environ if environ is None else environ
        found = {
            name: SecretStr(source[key])
            for name in SECRET_FIELDS
            if getattr(self, name) is None and (key := f"STREAMSCORE_{name.upper()}") in source
        }
        return self.model_copy(update=found) if found else self


def parse_overrides(pairs: tuple[str, ...] | list[str]) -> dict[str, str]:
    """Turn ``["a=1", "b=x"]`` from ``--set`` flags into a dict; pydantic converts the types."""
    result: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep:
            raise ConfigError(f"--set expects field=value, got {pair!r}")
        result[name.strip().replace("-", "_")] = value
    return result


def settings_from(pairs: tuple[str, ...] | list[str] = ()) -> Settings:
    """The effective settings: defaults, then ``STREAMSCORE_*`` variables, then ``--set`` pairs.

    Every entry point (the CLI, the job script, the benchmark) builds its settings here, so the
    rules and the error message are the same everywhere."""
    try:
        # (pydantic-settings fills the fields from the environment; mypy sees a bare call)
        return Settings().with_overrides(parse_overrides(pairs))  # type: ignore[call-arg]
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'settings'}: {e['msg']}" for e in exc.errors()
        )
        raise ConfigError(f"invalid settings: {problems}") from None


def add_set_argument(parser: argparse.ArgumentParser) -> None:
    """The ``--set FIELD=VALUE`` option for the argparse entry points (job script, benchmark);
    the click CLI declares the same option with the same help and parses it with
    ``settings_from``."""
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help=SET_OPTION_HELP,
    )
