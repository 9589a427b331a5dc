"""Evaluation stage: metrics (:mod:`~pipeline.evaluation.metrics`), decision thresholds
(:mod:`~pipeline.evaluation.thresholds`), the TF-IDF baseline (:mod:`~pipeline.evaluation.baseline`) and the
predictions of a run or a saved model (:mod:`~pipeline.evaluation.predictions`). Computes numbers; writes no files."""
