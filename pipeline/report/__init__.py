"""Report stage: ``report.md`` (:mod:`~pipeline.report.render`), PNG figures (:mod:`~pipeline.report.plots`) and
the one builder that writes both for ``train`` and ``evaluate`` (:mod:`~pipeline.report.builder`)."""
