"""pandera contracts for the tables the pipeline passes between steps.

- :mod:`data_contracts.recordings`: one row per source recording (labels, lineage, rate).
- :mod:`data_contracts.windows`: one row per stored window (the Parquet store's columns).
- :mod:`data_contracts.rejections`: one row per refused or deferred file.

Schemas whose allowed values depend on the study (conditions, subject ids) are built from the
configuration by the ``*_schema`` functions; the DataFrameModels hold what never changes.
"""
