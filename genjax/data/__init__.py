"""Input data: TFDS data_source -> grain pipelines, and the embedded `digits` dataset."""

from genjax.data.digits import prepare_digits
from genjax.data.pipeline import (
    DatasetMeta,
    DatasetNotAvailableError,
    Pipeline,
    dataset_meta,
    dataset_source,
    make_pipeline,
)

__all__ = [
    "DatasetMeta",
    "DatasetNotAvailableError",
    "Pipeline",
    "dataset_meta",
    "dataset_source",
    "make_pipeline",
    "prepare_digits",
]
