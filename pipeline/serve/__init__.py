"""Serve stage: load a model folder once and classify texts (:mod:`~pipeline.serve.classifier`), from the
command line, files, or over HTTP. Imports no training-only library (Trainer, datasets, evaluate,
scikit-learn, matplotlib): a server or a batch job loads only what inference needs."""
