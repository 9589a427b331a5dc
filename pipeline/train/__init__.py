"""Train stage: ``TrainingArguments`` from the config (:mod:`~pipeline.train.arguments`), the ``Trainer`` with
its callbacks and resume point (:mod:`~pipeline.train.trainer`), the per-epoch history
(:mod:`~pipeline.train.history`)."""
