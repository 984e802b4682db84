"""Input data: TFDS data_source -> grain pipelines, and the embedded datasets ('digits';
the paired 'digits_upsample' and 'photo_colour'; the captioned 'captioned_digits').

Tasks describe their batches with a `DataSpec` (`genjax.data.spec`: the layouts
'images', 'paired', 'unpaired', 'captioned', from TFDS or image folders); `meta`,
`training_pipeline`, `load_split` and `held_out_batch` (`genjax.data.serve`) serve them."""

from genjax.data.digits import prepare_digits
from genjax.data.folders import FolderError
from genjax.data.pipeline import (
    DatasetMeta,
    DatasetNotAvailableError,
    Pipeline,
    classifier_dataset,
    dataset_meta,
    dataset_source,
    make_pipeline,
)
from genjax.data.serve import held_out_batch, load_split, meta, split_size, training_pipeline
from genjax.data.spec import LAYOUTS, DataSpec
from genjax.data.text import Tokenizer

__all__ = [
    "DataSpec",
    "LAYOUTS",
    "FolderError",
    "Tokenizer",
    "held_out_batch",
    "load_split",
    "meta",
    "training_pipeline",
    "split_size",
    "DatasetMeta",
    "DatasetNotAvailableError",
    "Pipeline",
    "dataset_meta",
    "dataset_source",
    "make_pipeline",
    "prepare_digits",
    "classifier_dataset",
]
