"""Serving stage: the HTTP server (TEI-compatible ``/predict``, dynamic batching, demo page) and file prediction.

- :mod:`pipeline.serve.classifier`: :class:`Classifier` loads a model folder once (through the export stage's
  reader) and classifies texts in length-sorted batches (:mod:`pipeline.serve.batch_plan` cuts them on CPU).
- :mod:`pipeline.serve.backends`: what computes a batch's logits, torch or ONNX Runtime (the folder's ``model.onnx``,
  imported only when chosen).
- :mod:`pipeline.serve.settings`: ``spam-tune serve`` options and their protective defaults;
  :mod:`pipeline.serve.cli_args`: the command-line flags of ``serve`` and ``predict --file``.
- :mod:`pipeline.serve.schemas` / :mod:`pipeline.serve.scoring`: request/response shapes and how logits become them.
- :mod:`pipeline.serve.batcher`: gathers concurrent requests into one forward pass on one worker thread.
- :mod:`pipeline.serve.app`: the FastAPI app factory; :mod:`pipeline.serve.server`: uvicorn, signals, exit codes.
- :mod:`pipeline.serve.files` / :mod:`pipeline.serve.predict_file`: chunked readers/writers and ``predict --file``.

Nothing here imports the training stack (datasets, evaluate, scikit-learn, matplotlib, transformers.Trainer);
this package's ``__init__`` imports nothing at all, so ``spam-tune --help`` stays fast.
"""
