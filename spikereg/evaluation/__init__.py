"""Evaluation of registrations: metrics of one registered pair, and ``spikereg evaluate`` over a dataset.

:func:`measure_pair` is the one place that turns a predicted field into the
numbers we report (used by ``spikereg evaluate`` and benchmarks/accuracy.py
alike); :func:`evaluate` registers every pair of a DeepReg-layout dataset with
an exported model and writes DeepReg-style ``metrics.csv`` plus per-label and
overall statistics.
"""
from .evaluate import EVALUATION_FILES, EvaluationResult, evaluate, statistics, write_tables
from .measure import PairMetrics, brain_mask, measure_pair

__all__ = [
    "EVALUATION_FILES",
    "EvaluationResult",
    "PairMetrics",
    "brain_mask",
    "evaluate",
    "measure_pair",
    "statistics",
    "write_tables",
]
