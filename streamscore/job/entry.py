"""Entry point of the scoring job: the script ``streamscore submit`` hands to ``flink run -py``.

Thin on purpose: it reads the settings (environment and ``--set field=value`` arguments), loads
the model version on the client, builds the graph from the ``streamscore`` package and runs it.
It ships inside the package (``streamscore.resources.job_entry_script``), so an installed wheel
submits the same job as a checkout.
"""

from __future__ import annotations

import argparse
import logging

from pyflink.datastream import StreamExecutionEnvironment

from streamscore.config import add_set_argument, settings_from
from streamscore.job.pipeline import build, configure
from streamscore.model.loading import load_for_job


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    add_set_argument(parser)
    args, _ = parser.parse_known_args()
    settings = settings_from(args.overrides)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    env = StreamExecutionEnvironment.get_execution_environment()
    configure(env, settings)
    build(env, settings, load_for_job(settings))
    env.execute(settings.job_name)


if __name__ == "__main__":
    main()
