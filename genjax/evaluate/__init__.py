"""Measuring what the models make: quality metrics, evaluation networks, a protocol.

    python -m genjax.evaluate --workdir=DIR [--num=N] [--seed=S] [--extractor_workdir=DIR]

evaluates a run's newest checkpoint and writes <workdir>/eval/step_<N>.json. From
Python: `evaluate_workdir(workdir, num=..., seed=...) -> dict`. The training loop runs
the same evaluation every `eval_every_steps` (`make_evaluator`).

  metrics     Fréchet distance, KID, precision/recall, IS-style score (any features)
  extractors  the networks that give the features (a genjax classifier by default)
  evaluator   the protocol: what is compared with what, recorded with every figure
"""

from genjax.evaluate.evaluator import (ClassifierEvaluator, GenerativeEvaluator, compare,
                                       default_classifier_workdir, evaluate_workdir,
                                       make_evaluator, write_result)
from genjax.evaluate.extractors import (ClassifierExtractor, Extractor, load_extractor,
                                        weights_sha256)

__all__ = ["evaluate_workdir", "make_evaluator", "compare", "default_classifier_workdir",
           "GenerativeEvaluator", "ClassifierEvaluator", "write_result", "Extractor",
           "ClassifierExtractor", "load_extractor", "weights_sha256"]
