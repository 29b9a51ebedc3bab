"""The ``streamscore`` command line: stack, job, data in and out, training, and the demo."""

from __future__ import annotations

import json
import logging
import sys
import time
from collections import Counter
from pathlib import Path

import click

from streamscore.config import SET_OPTION_HELP, Settings, settings_from
from streamscore.errors import StreamscoreError

log = logging.getLogger("streamscore")


class FriendlyErrors(click.Group):
    """Every command's ``StreamscoreError`` becomes one line on stderr and exit code 1.

    The top group's ``invoke`` runs the group callback and every subcommand (nested groups
    included), so one place covers the whole CLI; anything else is a bug and keeps its traceback.
    """

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except StreamscoreError as exc:
            raise click.ClickException(str(exc)) from None


@click.group(cls=FriendlyErrors, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--set", "overrides", multiple=True, metavar="FIELD=VALUE", help=SET_OPTION_HELP)
@click.option("--log-level", default="INFO", show_default=True)
@click.pass_context
def main(ctx: click.Context, overrides: tuple[str, ...], log_level: str) -> None:
    """Real-time fraud scoring: Kafka → PyFlink (RocksDB windows) → Redis + LightGBM → Kafka."""
    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S"
    )
    ctx.obj = {"settings": settings_from(overrides), "overrides": list(overrides)}


def _settings(ctx: click.Context) -> Settings:
    return ctx.obj["settings"]


@main.command("config")
@click.pass_context
def show_config(ctx: click.Context) -> None:
    """Print the effective settings as JSON (secrets hidden)."""
    click.echo(json.dumps(_settings(ctx).as_dict(), indent=2, default=str))


# --- stack -------------------------------------------------------------------------------------
@main.group()
def stack() -> None:
    """The local Kafka, Redis and Flink servers (no Docker)."""


@stack.command("up")
@click.pass_context
def stack_up(ctx: click.Context) -> None:
    """Start whatever is not running yet and wait until all of it is healthy."""
    from streamscore.stack import stack as stack_module

    s = _settings(ctx)
    stack_module.up(s)
    _print_status(s)


@stack.command("down")
@click.pass_context
def stack_down(ctx: click.Context) -> None:
    """Stop every server of the stack and its supervisor."""
    from streamscore.stack import stack as stack_module

    stack_module.down(_settings(ctx))
    click.echo("stack stopped")


@stack.command("status")
@click.pass_context
def stack_status(ctx: click.Context) -> None:
    """What runs, with pids and URLs; exit code 1 if anything is down."""
    if not _print_status(_settings(ctx)):
        sys.exit(1)


def _print_status(s: Settings) -> bool:
    from streamscore.stack import stack as stack_module

    statuses = stack_module.status(s)
    for c in statuses:
        click.echo(
            f"{c.name:<20} {c.state.lower() or 'stopped':<9} pid={c.pid or '-':<8} "
            f"restarts={c.restarts}"
        )
    click.echo(f"kafka bootstrap    {s.kafka_bootstrap}")
    click.echo(f"redis              redis://{s.redis_host}:{s.redis_port}/{s.redis_db}")
    click.echo(f"flink web UI       {s.flink_rest_url}")
    click.echo(f"job metrics        http://{s.metrics_host}:{s.metrics_port}/metrics")
    click.echo(f"prometheus         {s.prometheus_url} (alerts: {s.prometheus_url}/alerts)")
    return all(c.running for c in statuses)


# --- job ---------------------------------------------------------------------------------------
@main.command()
@click.pass_context
def submit(ctx: click.Context) -> None:
    """Submit the scoring job to the cluster (with `flink run -py`) and wait until it runs."""
    from streamscore.jobcontrol import submit as submit_job

    s = _settings(ctx)
    job_id = submit_job(s, ctx.obj["overrides"])
    click.echo(f"job {job_id} RUNNING: {s.flink_rest_url}/#/job/running/{job_id}/overview")


@main.command()
@click.option(
    "--to",
    "changes",
    multiple=True,
    metavar="FIELD=VALUE",
    help="What the new job changes, e.g. --to model_version=3 --to scoring_parallelism=1 "
    "(none: the same settings, new code).",
)
@click.pass_context
def upgrade(ctx: click.Context, changes: tuple[str, ...]) -> None:
    """Stop the job with a savepoint and run it again from there: new code, model or
    parallelism, with every user's state kept (refused if the state layout changed)."""
    from streamscore.config import settings_from
    from streamscore.upgrade import upgrade as upgrade_job

    old = _settings(ctx)
    overrides = [*ctx.obj["overrides"], *changes]
    new = settings_from(overrides)
    savepoint, job_id = upgrade_job(old, new, overrides)
    click.echo(f"savepoint {savepoint}")
    click.echo(f"job {job_id} RUNNING: {new.flink_rest_url}/#/job/running/{job_id}/overview")


@main.command()
@click.option("--job-id", default=None, help="Defaults to the running job named job_name.")
@click.pass_context
def cancel(ctx: click.Context, job_id: str | None) -> None:
    """Cancel the scoring job."""
    from streamscore.jobcontrol import cancel as cancel_job

    cancelled = cancel_job(_settings(ctx), job_id)
    click.echo(f"cancelled {cancelled}" if cancelled else "no running job")


# --- data --------------------------------------------------------------------------------------
@main.command()
@click.option(
    "--rate", default=200.0, show_default=True, help="Events per second (0: a backlog, at once)."
)
@click.option("--count", type=int, default=None, help="Stop after this many events.")
@click.option("--duration", type=float, default=None, help="Stop after this many seconds.")
@click.option("--users", default=2000, show_default=True)
@click.option("--seed", default=42, show_default=True)
@click.option(
    "--fraud-probability",
    default=0.004,
    show_default=True,
    help="Chance per event that its card gets compromised, which starts a burst of fraud "
    "(0.004: about 1 % of events are fraud).",
)
@click.option(
    "--out-of-order",
    "ooo_fraction",
    default=0.0,
    show_default=True,
    help="Fraction of events sent up to --out-of-order-ms behind their time.",
)
@click.option("--out-of-order-ms", default=3000, show_default=True)
@click.option(
    "--late",
    "late_fraction",
    default=0.0,
    show_default=True,
    help="Fraction of events whose time is --late-ms in the past.",
)
@click.option("--late-ms", default=600_000, show_default=True)
@click.option(
    "--malformed",
    "malformed_fraction",
    default=0.0,
    show_default=True,
    help="Fraction of records that are garbage or invalid.",
)
@click.option("--labels/--no-labels", default=True, show_default=True)
@click.option(
    "--label-delay-ms",
    default=30_000,
    show_default=True,
    help="Median delay of a label after its event: log-normal, fraud labels (chargebacks) with "
    "4x this median.",
)
@click.option(
    "--label-delay-sigma",
    default=0.6,
    show_default=True,
    help="Shape of the label delays (sigma of their log): 0.6 puts 95 % of them within 0.31-3.2x "
    "the median; with the defaults 0.37 % of fraud labels come more than 10 minutes late.",
)
@click.option(
    "--drift",
    "drift_specs",
    multiple=True,
    metavar="KIND@SECONDS",
    help="From SECONDS of event time after the first event on: 'data' (amounts x2.5, unseen "
    "categories and countries) or 'concept' (a new fraud pattern). Repeatable.",
)
@click.option(
    "--from-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Send your own JSONL events instead of synthetic ones.",
)
@click.pass_context
def produce(
    ctx: click.Context,
    rate: float,
    count: int | None,
    duration: float | None,
    users: int,
    seed: int,
    fraud_probability: float,
    ooo_fraction: float,
    out_of_order_ms: int,
    late_fraction: float,
    late_ms: int,
    malformed_fraction: float,
    labels: bool,
    label_delay_ms: int,
    label_delay_sigma: float,
    drift_specs: tuple[str, ...],
    from_file: Path | None,
) -> None:
    """Send synthetic card transactions (or --from-file events) to the events topic."""
    from streamscore.generator import GeneratorConfig, parse_drift
    from streamscore.produce import NoiseConfig
    from streamscore.produce import produce as run

    if count is None and duration is None and from_file is None:
        raise click.UsageError("give --count or --duration (or --from-file)")
    if drift_specs and from_file is not None:
        raise click.UsageError("--drift changes synthetic events; it does not apply to --from-file")
    try:
        drifts = tuple(parse_drift(spec) for spec in drift_specs)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--drift") from None
    generator = GeneratorConfig(
        users=users,
        seed=seed,
        # A backlog (--rate 0) spaces its event times as if sent at 1000/s, ending about now.
        events_per_second=rate if rate > 0 else 1000.0,
        fraud_burst_probability=fraud_probability,
        drifts=drifts,
    )
    noise = NoiseConfig(
        ooo_fraction, out_of_order_ms, late_fraction, late_ms, malformed_fraction, seed
    )
    run(
        _settings(ctx),
        count=count,
        duration_s=duration,
        rate=rate,
        generator=generator,
        noise=noise,
        labels=labels,
        label_delay_ms=label_delay_ms,
        label_delay_sigma=label_delay_sigma,
        from_file=from_file,
    )


@main.command()
@click.option("--topic", default=None, help="Defaults to the predictions topic.")
@click.option("--from-beginning", is_flag=True)
@click.option("--max", "max_messages", type=int, default=None)
@click.option("--timeout", type=float, default=None, help="Stop after this many idle seconds.")
@click.option("--json", "as_json_lines", is_flag=True, help="JSON lines instead of a table.")
@click.pass_context
def consume(
    ctx: click.Context,
    topic: str | None,
    from_beginning: bool,
    max_messages: int | None,
    timeout: float | None,
    as_json_lines: bool,
) -> None:
    """Tail and decode a topic (predictions, dead-letters, labels or events)."""
    from streamscore import consume as consumer

    s = _settings(ctx)
    try:
        for message in consumer.consume(
            s,
            topic or s.topic_predictions,
            from_beginning=from_beginning,
            max_messages=max_messages,
            idle_timeout_s=timeout,
        ):
            click.echo(
                json.dumps(consumer.as_json(message)) if as_json_lines else consumer.pretty(message)
            )
    except KeyboardInterrupt:
        pass


# --- feature store -----------------------------------------------------------------------------
@main.group()
def store() -> None:
    """The online feature store in Redis."""


@store.command("backfill")
@click.pass_context
def store_backfill(ctx: click.Context) -> None:
    """Rebuild the store from the events topic (from the beginning) with the job's feature
    engine: each user's features as of their newest event. For a new Redis or after data loss;
    safe while the job runs (a newer stored vector is kept)."""
    from streamscore.store_backfill import backfill

    click.echo(backfill(_settings(ctx)).summary())


# --- model -------------------------------------------------------------------------------------
@main.command()
@click.option("--events", default=200_000, show_default=True, help="Synthetic history size.")
@click.option("--users", default=2000, show_default=True)
@click.option("--seed", default=42, show_default=True)
@click.option(
    "--from-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Train on a JSONL event log with is_fraud labels instead.",
)
@click.option(
    "--from-topics",
    is_flag=True,
    help="Train on the events and labels topics, as the job saw them (late rule, horizon).",
)
@click.option("--if-missing", is_flag=True, help="Do nothing if a model already exists.")
@click.pass_context
def train(
    ctx: click.Context,
    events: int,
    users: int,
    seed: int,
    from_file: Path | None,
    from_topics: bool,
    if_missing: bool,
) -> None:
    """Build a point-in-time training set with the job's feature code and train LightGBM."""
    from streamscore.generator import GeneratorConfig
    from streamscore.model import train as trainer
    from streamscore.model.registry import list_versions

    s = _settings(ctx)
    if if_missing and list_versions(s.models_dir):
        click.echo(f"model {list_versions(s.models_dir)[-1]} exists; not training")
        return
    from streamscore.model.decisions import CostModel

    config = trainer.TrainConfig(
        events=events,
        review_threshold=s.review_threshold,
        decline_threshold=s.decline_threshold,
        costs=CostModel.from_settings(s),
    )
    if from_file:
        directory = trainer.train_from_file(s.models_dir, config, from_file)
    elif from_topics:
        directory = trainer.train_from_topics(s.models_dir, config, s)
    else:
        directory = trainer.train_from_generator(
            s.models_dir, config, GeneratorConfig(users=users, seed=seed)
        )
    metrics = json.loads((directory / "metadata.json").read_text())["metrics"]
    click.echo(f"wrote {directory}: {trainer.summary_line(metrics)}")
    if from_topics:
        click.echo(
            "registered as a new version (challenger to the champion): try it on a share of "
            "users with `streamscore models canary <version> --percent 10` (see models list)"
        )


# --- quality -----------------------------------------------------------------------------------
@main.command()
@click.option("--labels", "window_labels", type=int, default=None, help="Window size per model.")
@click.option("--timeout", type=float, default=5.0, show_default=True, help="Idle seconds.")
@click.pass_context
def quality(ctx: click.Context, window_labels: int | None, timeout: float) -> None:
    """Champion vs challenger (and a canary's arms): quality and business value, with CIs."""

    from streamscore.quality.report import quality_report

    s = _settings(ctx)
    click.echo(quality_report(s, window_labels or s.quality_window_labels, timeout))


# --- health ------------------------------------------------------------------------------------
@main.command("report")
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("health-report"),
    show_default=True,
    help="Folder for index.html and its PNGs.",
)
@click.option("--minutes", type=click.IntRange(min=1), default=30, show_default=True)
@click.pass_context
def health_report(ctx: click.Context, out_dir: Path, minutes: int) -> None:
    """A static HTML health report from Prometheus: every dashboard panel, alerts, drift."""
    from streamscore.monitoring.report import write_report

    click.echo(write_report(_settings(ctx), out_dir, minutes))


@main.command("native")
@click.option("--current", is_flag=True, help="Only the exit code: 0 if the build is current.")
def native_status(current: bool) -> None:
    """Which code runs the scoring path here: the mypyc build, or the Python sources and why
    (`make native` rebuilds; streamscore/native.py)."""
    import importlib

    from streamscore import native

    if current:
        sys.exit(0 if native.build_is_current() else 1)
    click.echo(f"scoring path: {native.mode}")
    for name in native.COMPILED_MODULES:
        module = importlib.import_module(name)
        # What runs: the source, or the extension next to it (a mypyc module's own __file__
        # can name a folder twice).
        source = native.source_path(Path(native.__file__).resolve().parent.parent, name)
        loaded = Path(module.__file__ or "")
        running = source if loaded.suffix == ".py" else source.with_name(loaded.name)
        click.echo(f"  {name}: {running}")


@main.command("status")
@click.pass_context
def health_status(ctx: click.Context) -> None:
    """Health at a glance: the job, its rates, lag, checkpoints, drift and firing alerts."""
    from streamscore.monitoring.status import format_status
    from streamscore.monitoring.status import health_status as gather

    click.echo(format_status(gather(_settings(ctx))))


# --- demo --------------------------------------------------------------------------------------
@main.command()
@click.option("--rate", default=200.0, show_default=True)
@click.option("--duration", default=60.0, show_default=True, help="Seconds of events to send.")
@click.pass_context
def demo(ctx: click.Context, rate: float, duration: float) -> None:
    """Everything end to end: stack up, model, job RUNNING, events in, predictions out."""
    from streamscore import consume as consumer
    from streamscore.feature_store import connect, read_features
    from streamscore.generator import GeneratorConfig
    from streamscore.jobcontrol import submit as submit_job
    from streamscore.model.registry import list_versions
    from streamscore.produce import NoiseConfig
    from streamscore.produce import produce as run
    from streamscore.stack import stack as stack_module

    s = _settings(ctx)
    stack_module.up(s)
    if not list_versions(s.models_dir):
        ctx.invoke(train)
    job_id = submit_job(s, ctx.obj["overrides"])
    click.echo(f"job RUNNING — watch it at {s.flink_rest_url}/#/job/running/{job_id}/overview")
    run(
        s,
        count=None,
        duration_s=duration,
        rate=rate,
        generator=GeneratorConfig(events_per_second=rate),
        noise=NoiseConfig(
            out_of_order_fraction=0.02, late_fraction=0.002, malformed_fraction=0.002
        ),
    )
    time.sleep(s.checkpoint_interval_ms / 1000 + 2)
    click.echo("\nlatest predictions:")
    tail = list(consumer.consume(s, s.topic_predictions, from_beginning=True, idle_timeout_s=3))
    for message in tail[-5:]:
        click.echo("  " + consumer.pretty(message))
    decisions = Counter(m.record["decision"] for m in tail if m.record)
    flagged = [m for m in tail if m.record and m.record["decision"] != "APPROVE"]
    click.echo(f"({len(tail)} predictions on '{s.topic_predictions}': {dict(decisions)})")
    if flagged:
        click.echo("\nflagged as fraud (the latest):")
        for message in flagged[-5:]:
            click.echo("  " + consumer.pretty(message))
    if tail and tail[-1].record:
        user = tail[-1].record["user_id"]
        stored = read_features(connect(s), s.redis_key_prefix, user)
        click.echo(f"\nRedis {s.redis_key_prefix}{user}: {json.dumps(stored)[:400]}...")
    from streamscore.quality.report import quality_report

    click.echo("\nchampion vs challenger on the labels joined so far (streamscore quality):")
    click.echo(quality_report(s, s.quality_window_labels, idle_timeout_s=3))
    from streamscore.monitoring.status import format_status, health_status

    click.echo("\nhealth (streamscore status):")
    click.echo(format_status(health_status(s)))
    click.echo(
        f"\nFlink web UI: {s.flink_rest_url}   Prometheus: {s.prometheus_url}   "
        "tail: streamscore consume\nquality: streamscore quality   health: streamscore status, "
        "streamscore report\nstop everything: streamscore stack down"
    )


# --- model registry ----------------------------------------------------------------------------
@main.group()
def models() -> None:
    """The model registry (MLflow, mlflow_tracking_uri): versions, and which one serves.

    promote, canary and rollback move the registry's aliases (champion, candidate,
    previous-champion) and send the running job an ASSIGN record on the control topic."""


@models.command("list")
@click.pass_context
def models_list(ctx: click.Context) -> None:
    """Registered versions with their aliases, creation time, holdout AUC and feature set."""
    from streamscore.model.mlflow_registry import list_lines

    click.echo("\n".join(list_lines(_settings(ctx))))


@models.command("register")
@click.argument("local_version", default="latest")
@click.pass_context
def models_register(ctx: click.Context, local_version: str) -> None:
    """Register a version directory under models_dir (one trained before the registry, or
    whose registration failed). Registering it again does nothing."""
    from streamscore.model.mlflow_registry import register_local

    click.echo(register_local(_settings(ctx), local_version))


@models.command("promote")
@click.argument("version")
@click.pass_context
def models_promote(ctx: click.Context, version: str) -> None:
    """Make VERSION (3, v3 or its local name) the champion for every user; ends any canary."""
    from streamscore.model.mlflow_registry import promote

    click.echo(promote(_settings(ctx), version))


@models.command("canary")
@click.argument("version")
@click.option(
    "--percent",
    type=click.IntRange(1, 99),
    required=True,
    help="Share of users (a stable hash of user_id) scored by VERSION.",
)
@click.pass_context
def models_canary(ctx: click.Context, version: str, percent: int) -> None:
    """Score PERCENT % of users with VERSION (the candidate), the rest with the champion."""
    from streamscore.model.mlflow_registry import canary

    click.echo(canary(_settings(ctx), version, percent))


@models.command("rollback")
@click.pass_context
def models_rollback(ctx: click.Context) -> None:
    """End the running canary; without one, make previous-champion the champion again."""
    from streamscore.model.mlflow_registry import rollback

    click.echo(rollback(_settings(ctx)))
