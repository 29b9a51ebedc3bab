#!/usr/bin/env python
r"""How fast PyFlink runs a keyed Python operator, by execution mode: the probe behind the choice
of thread mode (README, Performance, and bench/HISTORY.md).

A local mini-cluster (no stack needed), parallelism 1: a JVM sequence source of ``--records``
rows keyed by ``--keys`` strings in the JVM, one keyed Python function that reads, updates and
writes a ~600-byte pickled value per record and reads the watermark, and a discarding sink. The
time printed includes the job's start; run two sizes and take the difference for a rate:

    .venv/bin/python bench/keyed_probe.py --mode thread --records 100000
    .venv/bin/python bench/keyed_probe.py --mode thread --records 500000
    .venv/bin/python bench/keyed_probe.py --mode process --records 100000 \
        --cache 20000 --bundle 5000

``--skip-reads`` keeps each key's value in the function (as the job's ``UserStateCache`` does),
``--no-state`` drops the state calls: what the crossing alone costs.
"""

from __future__ import annotations

import argparse
import os
import site
import sys
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mode", choices=("thread", "process"), default="thread")
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--keys", type=int, default=10_000)
    parser.add_argument("--cache", type=int, default=1000, help="python.state.cache-size")
    parser.add_argument("--bundle", type=int, default=1000, help="python.fn-execution.bundle.size")
    parser.add_argument("--skip-reads", action="store_true")
    parser.add_argument("--no-state", action="store_true")
    args = parser.parse_args()
    # The local JVM's embedded interpreter (thread mode) finds this venv's packages through it.
    os.environ["PYTHONPATH"] = os.pathsep.join(site.getsitepackages())

    from pyflink.common import Configuration
    from pyflink.common.typeinfo import Types
    from pyflink.datastream import (
        DataStream,
        KeyedProcessFunction,
        KeyedStream,
        StreamExecutionEnvironment,
    )
    from pyflink.datastream.state import ValueStateDescriptor
    from pyflink.java_gateway import get_gateway
    from pyflink.table import StreamTableEnvironment

    skip_reads, no_state = args.skip_reads, args.no_state

    class Update(KeyedProcessFunction):
        def open(self, runtime_context):  # type: ignore[no-untyped-def]
            descriptor = ValueStateDescriptor("s", Types.PICKLED_BYTE_ARRAY())
            self.state = runtime_context.get_state(descriptor)
            self.kept: dict[str, list] = {}

        def process_element(self, value, ctx):  # type: ignore[no-untyped-def]
            key = ctx.get_current_key()
            current = self.kept.get(key) if skip_reads else None
            if current is None and not no_state:
                current = self.state.value()
            if current is None:
                current = [0, [0.0] * 60]
            current[0] += 1
            current[1][current[0] % 60] = float(value)
            if not no_state:
                self.state.update(current)
            if skip_reads:
                self.kept[key] = current
            ctx.timer_service().current_watermark()
            yield key, current[0]

    conf = Configuration()
    for key, value in {
        "python.execution-mode": args.mode,
        "python.executable": sys.executable,
        "python.client.executable": sys.executable,
        "python.state.cache-size": str(args.cache),
        "python.fn-execution.bundle.size": str(args.bundle),
        "python.fn-execution.bundle.time": "50",
        "state.backend.type": "rocksdb",
    }.items():
        conf.set_string(key, value)
    env = StreamExecutionEnvironment.get_execution_environment(conf)
    env.set_parallelism(1)
    t_env = StreamTableEnvironment.create(env)
    t_env.execute_sql(
        "CREATE TABLE src (id BIGINT) WITH ('connector' = 'datagen', "
        "'fields.id.kind' = 'sequence', 'fields.id.start' = '1', "
        f"'fields.id.end' = '{args.records}', 'rows-per-second' = '100000000')"
    )
    rows = t_env.to_data_stream(
        t_env.sql_query(f"SELECT CAST(MOD(id, {args.keys}) AS STRING) AS k, id FROM src")
    )
    jvm = get_gateway().jvm
    j_rows = rows._j_data_stream
    j_rows.getTransformation().setOutputType(
        Types.ROW([Types.STRING(), Types.LONG()]).get_java_type_info()
    )
    j_keyed = j_rows.keyBy(jvm.KeyByKeySelector(), Types.ROW([Types.STRING()]).get_java_type_info())
    out = KeyedStream(j_keyed, Types.LONG(), DataStream(j_rows)).process(
        Update(), output_type=Types.TUPLE([Types.STRING(), Types.LONG()])
    )
    out._j_data_stream.sinkTo(jvm.org.apache.flink.streaming.api.functions.sink.v2.DiscardingSink())
    started = time.time()
    env.execute("keyed-probe")
    print(
        f"mode={args.mode} records={args.records} keys={args.keys} cache={args.cache} "
        f"bundle={args.bundle} skip_reads={skip_reads} no_state={no_state}: "
        f"{time.time() - started:.1f} s including start-up"
    )


if __name__ == "__main__":
    main()
