"""Entry point of the scoring job, as submitted with ``flink run -py jobs/scoring_job.py``.

Thin on purpose: it reads the settings (environment and ``--set field=value`` arguments), resolves
the model version on the client, builds the graph from the ``streamscore`` package and runs it.
"""

from __future__ import annotations

import argparse
import logging

from pyflink.datastream import StreamExecutionEnvironment

from streamscore.config import Settings, parse_overrides
from streamscore.job.pipeline import build, configure
from streamscore.model.registry import ModelNotFound
from streamscore.model.scorer import ModelBundle


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="override a setting (repeatable)",
    )
    args, _ = parser.parse_known_args()
    settings = Settings().with_overrides(parse_overrides(args.overrides))
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        model = ModelBundle.load(settings.models_dir, settings.model_version)
        logging.info("scoring with model %s", model.version)
    except ModelNotFound as exc:
        logging.warning("%s: the job will score with the fallback rules", exc)
        model = None
    env = StreamExecutionEnvironment.get_execution_environment()
    configure(env, settings)
    build(env, settings, model)
    env.execute(settings.job_name)


if __name__ == "__main__":
    main()
