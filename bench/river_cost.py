#!/usr/bin/env python
"""Cost and quality of river online learners: the measurement that picks the shadow challenger.

The challenger learns from each labelled (feature vector, label) pair prequentially (predict
first, then learn) and scores every event in shadow beside the LightGBM champion. Three costs
decide whether a candidate fits the job: ``predict_proba_one`` runs per event in the scoring
operator (~10k events/s over 2 subtasks), ``learn_one`` runs once per label in one learner
operator, and the model is published as a snapshot (a zlib-compressed pickle, see
``streamscore.model.challenger``) every few hundred labels over Kafka and loaded by every scoring
subtask. This script measures those costs and the prequential ROC AUC of each candidate on one
generated stream, outside Flink and without servers:

    .venv/bin/python bench/river_cost.py                      # 30k events, 2,000 users, seed 42
    .venv/bin/python bench/river_cost.py --models lr,lr_prep_w10_003 --events 100000
    .venv/bin/python bench/river_cost.py --events 100000 --drift concept@100   # adaptation
    .venv/bin/python bench/river_cost.py --label-delay 5000   # labels arrive 5,000 events late

Features come from ``FeatureEngine`` replayed over the events exactly as the job computes them
(``replay_features``); each vector becomes the dict river wants once per event (that cost is
printed on its own line) and every model sees the same dicts. Timings are the median and p99 of
``time.perf_counter_ns`` around each call after ``--warmup`` events. AUC is over the events after
the warm-up (± the Hanley-McNeil standard error, optimistic since fraud comes in bursts), over
the last 20 % by event time, where the champion (trained by ``streamscore.model.train`` on the
first 80 %) is shown for reference, and optionally from ``--since-s`` (or the first ``--drift``)
on. With the generator's default 500 events/s, 30k events span only a minute of event time:
fraud bursts scheduled past the end are missing, so the fraud rate is below its steady state
and AUCs rest on ~100 positives; use ``--events 100000`` or more to separate close candidates.

To measure another commit's generator and features, run from outside the repository with that
commit's package first on the path (the editable install otherwise wins):

    mkdir -p /tmp/ss-old && git archive OLD_COMMIT streamscore | tar -x -C /tmp/ss-old
    (cd /tmp && PYTHONPATH=/tmp/ss-old "$OLDPWD/.venv/bin/python" "$OLDPWD/bench/river_cost.py")

Run one measurement at a time on a quiet machine: it is single-threaded and timing-sensitive.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import math
import pickle
import statistics
import sys
import tempfile
import time
import zlib
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import river
from river import compose, forest, linear_model, naive_bayes, optim, preprocessing, tree

from streamscore.features.definitions import FEATURE_SET
from streamscore.features.engine import FeatureEngine
from streamscore.generator import GeneratorConfig, TransactionGenerator

# The challenger's own input transform (one-hot categories, log1p of the heavy-tailed columns),
# so the "prep" candidates measured here are the ones the job can run.
from streamscore.model.challenger import prepare
from streamscore.model.dataset import TrainingSet, replay_features
from streamscore.model.train import TrainConfig, roc_auc, split_by_time, train

CATEGORICAL = tuple(FEATURE_SET.categorical_features)
# streamscore.model.challenger publishes zlib.compress(pickle.dumps(model), 3).
SNAPSHOT_ZLIB_LEVEL = 3


def _scaled_lr(**kwargs: Any) -> Callable[[], Any]:
    return lambda: preprocessing.StandardScaler() | linear_model.LogisticRegression(**kwargs)


def _onehot_lr() -> Any:
    """Category codes one-hot encoded (a linear model cannot use a code's magnitude)."""
    categorical = compose.Select(*CATEGORICAL) | preprocessing.OneHotEncoder()
    numeric = compose.Discard(*CATEGORICAL) | preprocessing.StandardScaler()
    return (categorical + numeric) | linear_model.LogisticRegression(
        optimizer=optim.SGD(0.01), loss=optim.losses.Log(weight_pos=10.0)
    )


def _prepared_lr(**kwargs: Any) -> Callable[[], Any]:
    return lambda: (
        compose.FuncTransformer(prepare)
        | preprocessing.StandardScaler()
        | linear_model.LogisticRegression(**kwargs)
    )


# name → (description, factory). Every factory returns a fresh, untrained model. Tree and forest
# defaults have max_share_to_split=0.99: a leaf whose majority class exceeds 99 % never splits,
# which at fraud rates below 1 % means never; the *_share1 variants lift that.
CANDIDATES: dict[str, tuple[str, Callable[[], Any]]] = {
    "lr": (
        "StandardScaler | LogisticRegression(SGD 0.01)",
        _scaled_lr(optimizer=optim.SGD(0.01)),
    ),
    "lr_sgd02": (
        "StandardScaler | LogisticRegression(SGD 0.02)",
        _scaled_lr(optimizer=optim.SGD(0.02)),
    ),
    "lr_w10": (
        "StandardScaler | LogisticRegression(SGD 0.01, Log(weight_pos=10))",
        _scaled_lr(optimizer=optim.SGD(0.01), loss=optim.losses.Log(weight_pos=10.0)),
    ),
    "lr_adam_w10": (
        "StandardScaler | LogisticRegression(Adam 0.01, Log(weight_pos=10))",
        _scaled_lr(optimizer=optim.Adam(0.01), loss=optim.losses.Log(weight_pos=10.0)),
    ),
    "lr_onehot_w10": ("OneHot(categories) + StandardScaler | LR(SGD 0.01, w_pos 10)", _onehot_lr),
    "lr_prep_w10": (
        "prepare | StandardScaler | LR(SGD 0.01, Log(weight_pos=10))",
        _prepared_lr(optimizer=optim.SGD(0.01), loss=optim.losses.Log(weight_pos=10.0)),
    ),
    "lr_prep_w10_003": (
        "prepare | StandardScaler | LR(SGD 0.003, Log(weight_pos=10))",
        _prepared_lr(optimizer=optim.SGD(0.003), loss=optim.losses.Log(weight_pos=10.0)),
    ),
    "lr_prep_w10_001": (
        "prepare | StandardScaler | LR(SGD 0.001, Log(weight_pos=10))",
        _prepared_lr(optimizer=optim.SGD(0.001), loss=optim.losses.Log(weight_pos=10.0)),
    ),
    "alma": (
        "StandardScaler | ALMAClassifier()",
        lambda: preprocessing.StandardScaler() | linear_model.ALMAClassifier(),
    ),
    "gnb": ("GaussianNB()", naive_bayes.GaussianNB),
    "hatc": (
        "HoeffdingAdaptiveTreeClassifier(seed=42)",
        lambda: tree.HoeffdingAdaptiveTreeClassifier(seed=42),
    ),
    "hatc_share1": (
        "HoeffdingAdaptiveTreeClassifier(max_share_to_split=1.0, seed=42)",
        lambda: tree.HoeffdingAdaptiveTreeClassifier(max_share_to_split=1.0, seed=42),
    ),
    "arf5": ("ARFClassifier(n_models=5, seed=42)", lambda: forest.ARFClassifier(5, seed=42)),
    "arf5_share1": (
        "ARFClassifier(n_models=5, max_share_to_split=1.0, seed=42)",
        lambda: forest.ARFClassifier(5, max_share_to_split=1.0, seed=42),
    ),
    "arf10": ("ARFClassifier(n_models=10, seed=42)", lambda: forest.ARFClassifier(10, seed=42)),
}


@dataclass
class Result:
    model: str
    description: str
    predict_us_p50: float
    predict_us_p99: float
    learn_us_p50: float
    learn_us_p99: float
    pickle_kb: float
    dumps_ms: float  # pickle.dumps alone
    loads_ms: float  # pickle.loads alone
    snapshot_kb: float  # zlib level 3 of the pickle, as the job publishes it
    snapshot_dump_ms: float  # pickle.dumps + zlib.compress
    snapshot_load_ms: float  # zlib.decompress + pickle.loads
    auc: float  # prequential, events after the warm-up
    auc_se: float  # Hanley-McNeil standard error of ``auc`` (optimistic: fraud comes in bursts)
    auc_tail: float  # prequential, last 20 % by event time (the champion's holdout)
    auc_since: float  # prequential, events from --since-s on (nan without it)
    seconds: float  # wall time of the prequential pass
    round_trip_ok: bool  # the unpickled model predicts exactly what the original does
    notes: str = ""


def make_stream(
    events: int,
    users: int,
    seed: int,
    events_per_second: float | None = None,
    drifts: tuple[Any, ...] = (),
) -> tuple[list[dict[str, float]], np.ndarray, TrainingSet, float]:
    """Labelled events through the job's feature engine: river dicts, labels, the same rows as a
    ``TrainingSet`` (for the champion) and the median ns per ``dict(zip(names, vector))``."""
    extra: dict[str, Any] = {}
    if events_per_second is not None:
        extra["events_per_second"] = events_per_second
    if drifts:  # only generators that have drifts know the field
        extra["drifts"] = drifts
    generator = TransactionGenerator(GeneratorConfig(users=users, seed=seed, **extra))
    labels_by_id: dict[str, bool] = {}
    raw = []
    for transaction in generator.take(events):
        labels_by_id[transaction.event["event_id"]] = transaction.is_fraud
        raw.append(transaction.event)
    engine = FeatureEngine()
    names = engine.names
    xs: list[dict[str, float]] = []
    rows, labels, times, dict_ns = [], [], [], []
    clock = time.perf_counter_ns
    for event, vector in replay_features(raw, engine):
        started = clock()
        x = dict(zip(names, vector))
        dict_ns.append(clock() - started)
        xs.append(x)
        rows.append(vector)
        labels.append(1 if labels_by_id[event["event_id"]] else 0)
        times.append(event["event_time"])
    data = TrainingSet(
        np.asarray(rows, dtype=np.float64).reshape(len(rows), len(names)),
        np.asarray(labels, dtype=np.int8),
        np.asarray(times, dtype=np.int64),
        names,
    )
    return xs, data.labels, data, statistics.median(dict_ns)


def auc_standard_error(auc: float, positives: int, negatives: int) -> float:
    """Hanley & McNeil (1982): the AUC's standard error if positives were independent."""
    q1, q2 = auc / (2 - auc), 2 * auc * auc / (1 + auc)
    variance = (
        auc * (1 - auc) + (positives - 1) * (q1 - auc * auc) + (negatives - 1) * (q2 - auc * auc)
    ) / (positives * negatives)
    return math.sqrt(max(variance, 0.0))


def _p(values: list[int], q: float) -> float:
    """The q-quantile of ns values, in µs (nan when empty)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1000.0


def run_candidate(
    name: str,
    xs: list[dict[str, float]],
    labels: np.ndarray,
    tail: np.ndarray,
    since: np.ndarray | None,
    warmup: int,
    label_delay: int,
    pickle_repeats: int,
) -> Result:
    description, factory = CANDIDATES[name]
    model = factory()
    ys = [bool(v) for v in labels]
    scores = np.empty(len(xs), dtype=np.float64)
    predict_ns: list[int] = []
    learn_ns: list[int] = []
    pending: deque[tuple[dict[str, float], bool]] = deque()
    clock = time.perf_counter_ns
    nonfinite = 0
    gc.collect()
    started = time.perf_counter()
    for i, (x, y) in enumerate(zip(xs, ys)):
        t0 = clock()
        proba = model.predict_proba_one(x)
        t1 = clock()
        # Before it has seen both classes a model may leave True out (or return {}).
        p = proba.get(True, 0.0)
        if not math.isfinite(p):
            nonfinite += 1
            p = 0.0
        scores[i] = p
        pending.append((x, y))
        if len(pending) > label_delay:
            lx, ly = pending.popleft()
            t2 = clock()
            model.learn_one(lx, ly)
            t3 = clock()
            if i >= warmup:
                learn_ns.append(t3 - t2)
        if i >= warmup:
            predict_ns.append(t1 - t0)
    seconds = time.perf_counter() - started

    after = np.arange(len(xs)) >= warmup
    auc = roc_auc(labels[after], scores[after])
    n_pos = int(labels[after].sum())
    auc_se = auc_standard_error(auc, n_pos, int(after.sum()) - n_pos) if n_pos else math.nan
    auc_tail = roc_auc(labels[tail], scores[tail])
    auc_since = math.nan if since is None else roc_auc(labels[since], scores[since])

    protocol = pickle.HIGHEST_PROTOCOL
    dumps_ns, loads_ns, zdump_ns, zload_ns = [], [], [], []
    blob = snapshot = b""
    restored = None
    for _ in range(pickle_repeats):
        t0 = clock()
        blob = pickle.dumps(model, protocol=protocol)
        t1 = clock()
        snapshot = zlib.compress(blob, SNAPSHOT_ZLIB_LEVEL)
        t2 = clock()
        restored = pickle.loads(blob)
        t3 = clock()
        pickle.loads(zlib.decompress(snapshot))
        t4 = clock()
        dumps_ns.append(t1 - t0)
        zdump_ns.append(t2 - t0)
        loads_ns.append(t3 - t2)
        zload_ns.append(t4 - t3)
    probe = xs[-200:]
    round_trip_ok = all(restored.predict_proba_one(x) == model.predict_proba_one(x) for x in probe)
    notes = f"{nonfinite} non-finite scores set to 0" if nonfinite else ""
    return Result(
        model=name,
        description=description,
        predict_us_p50=_p(predict_ns, 0.5),
        predict_us_p99=_p(predict_ns, 0.99),
        learn_us_p50=_p(learn_ns, 0.5),
        learn_us_p99=_p(learn_ns, 0.99),
        pickle_kb=len(blob) / 1024.0,
        dumps_ms=statistics.median(dumps_ns) / 1e6,
        loads_ms=statistics.median(loads_ns) / 1e6,
        snapshot_kb=len(snapshot) / 1024.0,
        snapshot_dump_ms=statistics.median(zdump_ns) / 1e6,
        snapshot_load_ms=statistics.median(zload_ns) / 1e6,
        auc=auc,
        auc_se=auc_se,
        auc_tail=auc_tail,
        auc_since=auc_since,
        seconds=seconds,
        round_trip_ok=round_trip_ok,
        notes=notes,
    )


def champion_auc(data: TrainingSet) -> float:
    """AUC of LightGBM trained by ``streamscore.model.train`` on the first 80 % by event time,
    on the last 20 % (its holdout). A reference, not an online number: it never learns online."""
    with tempfile.TemporaryDirectory() as models_dir:
        directory = train(data, TrainConfig(), Path(models_dir), {"source": "bench/river_cost.py"})
        metadata = json.loads((directory / "metadata.json").read_text(encoding="utf-8"))
    return float(metadata["metrics"]["auc"])


def table(results: list[Result], champion: float | None, since_s: float | None) -> str:
    columns = [
        "model",
        "predict µs p50 / p99",
        "learn µs p50 / p99",
        "pickle KB",
        "dumps / loads ms",
        "zlib snapshot KB",
        "+zlib dump / load ms",
        "prequential AUC ± se",
        "AUC last 20 %",
        *([] if since_s is None else [f"AUC from {since_s:g} s"]),
        "pass s",
        "notes",
    ]
    rows = []
    for r in results:
        notes = [r.notes] if r.notes else []
        if not r.round_trip_ok:
            notes.append("unpickled model predicts differently")
        rows.append(
            [
                r.model,
                f"{r.predict_us_p50:.1f} / {r.predict_us_p99:.1f}",
                f"{r.learn_us_p50:.1f} / {r.learn_us_p99:.1f}",
                f"{r.pickle_kb:.1f}",
                f"{r.dumps_ms:.2f} / {r.loads_ms:.2f}",
                f"{r.snapshot_kb:.1f}",
                f"{r.snapshot_dump_ms:.2f} / {r.snapshot_load_ms:.2f}",
                f"{r.auc:.4f} ± {r.auc_se:.4f}",
                f"{r.auc_tail:.4f}",
                *([] if since_s is None else [f"{r.auc_since:.4f}"]),
                f"{r.seconds:.1f}",
                "; ".join(notes),
            ]
        )
    if champion is not None:
        row = ["LightGBM champion (reference)"] + ["–"] * (len(columns) - 1)
        row[columns.index("AUC last 20 %")] = f"{champion:.4f}"
        row[-1] = "batch-trained on the first 80 %"
        rows.append(row)
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=30_000, help="labelled events to generate")
    parser.add_argument("--users", type=int, default=2_000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "--events-per-second",
        type=float,
        help="generator's event-time rate (default: GeneratorConfig's); lower spans more time",
    )
    parser.add_argument(
        "--models",
        default=",".join(CANDIDATES),
        help=f"comma-separated, from: {', '.join(CANDIDATES)}",
    )
    parser.add_argument(
        "--warmup", type=int, default=2_000, help="events left out of timings and AUC"
    )
    parser.add_argument(
        "--label-delay",
        type=int,
        default=0,
        help="learn each label this many events after its prediction (0: immediately)",
    )
    parser.add_argument(
        "--drift",
        action="append",
        default=[],
        metavar="KIND@SECONDS",
        help="generator drift, e.g. concept@100 (generators with drifts only); repeatable",
    )
    parser.add_argument(
        "--since-s",
        type=float,
        help="also report AUC from first event + this many seconds on (default: first drift)",
    )
    parser.add_argument("--pickle-repeats", type=int, default=5)
    parser.add_argument("--no-champion", action="store_true", help="skip the LightGBM reference")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    unknown = [n for n in names if n not in CANDIDATES]
    if unknown:
        parser.error(f"unknown models {unknown}; choose from {list(CANDIDATES)}")
    if args.pickle_repeats < 1 or args.events <= args.warmup:
        parser.error("need --pickle-repeats >= 1 and more --events than --warmup")

    drifts: tuple[Any, ...] = ()
    if args.drift:
        try:
            from streamscore.generator import parse_drift
        except ImportError:
            parser.error("this streamscore.generator has no drifts")
        try:
            drifts = tuple(parse_drift(text) for text in args.drift)
        except ValueError as exc:
            parser.error(str(exc))
    since_s = args.since_s if args.since_s is not None else (drifts[0].at_s if drifts else None)

    generator_file = Path(sys.modules[TransactionGenerator.__module__].__file__ or "")
    generator_sha = hashlib.sha256(generator_file.read_bytes()).hexdigest()[:12]
    started = time.perf_counter()
    xs, labels, data, dict_ns = make_stream(
        args.events, args.users, args.seed, args.events_per_second, drifts
    )
    matrix = data.features
    _, tail = split_by_time(data, TrainConfig().holdout_fraction)
    since = None
    if since_s is not None:
        since = data.event_times >= data.event_times[0] + since_s * 1000
    print(
        f"river {river.__version__}, numpy {np.__version__}, python {sys.version.split()[0]}; "
        f"{generator_file} sha256 {generator_sha}"
    )
    print(
        f"{len(xs)} events ({args.users} users, seed {args.seed}), {int(labels.sum())} fraud "
        f"({labels.mean():.2%}), event time span {np.ptp(data.event_times) / 1000:.0f} s, "
        f"last 20 %: {int(tail.sum())} events, {int(labels[tail].sum())} fraud; "
        f"stream built in {time.perf_counter() - started:.1f} s"
    )
    print(
        f"features: {len(data.feature_names)}, non-finite values: "
        f"{int((~np.isfinite(matrix)).sum())}, -1 sentinels per column: "
        + ", ".join(
            f"{n}={int((matrix[:, j] == -1.0).sum())}"
            for j, n in enumerate(data.feature_names)
            if (matrix[:, j] == -1.0).any()
        )
    )
    constant = [n for j, n in enumerate(data.feature_names) if np.ptp(matrix[:, j]) == 0]
    if constant:
        print(f"constant columns in this stream: {', '.join(constant)}")
    print(f"dict(zip(names, vector)): {dict_ns / 1000:.2f} µs per event (median)")
    if since is not None:
        print(
            f"from {since_s:g} s on ({', '.join(args.drift) or 'no drift'}): "
            f"{int(since.sum())} events, {int(labels[since].sum())} fraud"
        )
    print(f"warm-up {args.warmup} events, label delay {args.label_delay} events\n", flush=True)

    results = []
    for name in names:
        result = run_candidate(
            name, xs, labels, tail, since, args.warmup, args.label_delay, args.pickle_repeats
        )
        results.append(result)
        print(
            f"  {name}: predict {result.predict_us_p50:.1f} µs, learn {result.learn_us_p50:.1f} "
            f"µs, AUC {result.auc:.4f}, {result.seconds:.1f} s",
            flush=True,
        )
    champion = None if args.no_champion else champion_auc(data)
    print()
    print(table(results, champion, since_s))
    for r in results:
        print(f"  {r.model}: {r.description}")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "command": sys.argv,
                    "river": river.__version__,
                    "generator_sha256": generator_sha,
                    "events": len(xs),
                    "drifts": args.drift,
                    "since_s": since_s,
                    "fraud": int(labels.sum()),
                    "dict_us": dict_ns / 1000,
                    "champion_auc_tail": champion,
                    "results": [asdict(r) for r in results],
                },
                indent=2,
            ),
            encoding="utf-8",
        )


if __name__ == "__main__":
    main()
