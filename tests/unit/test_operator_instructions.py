"""The instruction-count bench reads callgrind's inclusive listing as it prints it."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import operator_instructions  # noqa: E402 (bench/ is a folder of scripts, not a package)

# The shape of ``callgrind_annotate --inclusive=yes`` (3.19), file names shortened.
_ANNOTATED = """\
--------------------------------------------------------------------------------
Ir                     file:function
--------------------------------------------------------------------------------
3,430,416,302 (100.0%)  ???:0x000000000001ab70 [/usr/bin/python3.11]
3,430,410,000 (100.0%)  s.c:CPyDef_scoring___ScoringOperator___process_batch [s.so]
1,737,508,504 (50.65%)  s.c:CPyDef_scoring___ScoringOperator____score [s.so]
  274,382,732 ( 8.00%)  s.c:CPyDef_engine___FeatureEngine___update [s.so]
  262,104,723 ( 7.64%)  ???:LightGBM::GBDT::PredictRaw(double const*) [l.so]
    1,000,000 ( 0.03%)  s.c:CPyDef_engine___FeatureEngine___update'2 [s.so]
"""


def test_the_compiled_functions_are_read_largest_first_each_once() -> None:
    assert operator_instructions.compiled_functions(_ANNOTATED, 2) == [
        ("CPyDef_scoring___ScoringOperator___process_batch", 3_430_410_000),
        ("CPyDef_scoring___ScoringOperator____score", 1_737_508_504),
    ]
    listed = operator_instructions.compiled_functions(_ANNOTATED, 10)
    assert [name for name, _ in listed][2:] == ["CPyDef_engine___FeatureEngine___update"]
    assert dict(listed)["CPyDef_engine___FeatureEngine___update"] == 274_382_732
