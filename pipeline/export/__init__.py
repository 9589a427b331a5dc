"""Export stage: the model folder (:mod:`~pipeline.export.folder`, its one writer and reader), its metadata
(:mod:`~pipeline.export.metadata`, ``spam_tune.json``), the model card (:mod:`~pipeline.export.modelcard`),
merging an adapter (:mod:`~pipeline.export.merge`) and pushing to the Hub (:mod:`~pipeline.export.push`)."""
