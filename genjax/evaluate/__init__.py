"""Measuring what the models make: quality metrics, evaluation networks, a protocol.

    python -m genjax.evaluate --workdir=DIR [--num=N] [--seed=S] [--extractor_workdir=DIR]

evaluates a run's newest checkpoint with the evaluators its task declares and writes
<workdir>/eval/step_<N>.json. From Python: `evaluate_workdir(workdir, num=..., seed=...)
-> dict`. The training loop runs the same evaluation every `eval_every_steps`
(`make_evaluator`).

  metrics       Fréchet distance, KID, precision/recall, IS-style score (any features)
  extractors    the networks that give the features (a genjax classifier by default)
  generative    the 'generative' and 'classification' measurements and their protocol
  autoencoding  the 'autoencoding' measurement (compression, features, likelihood)
  conditional   the 'conditional' measurement (label accuracy and confusion, intra-class
                FD, within-class diversity, D's matched-vs-mismatched AUC)
  captions      the 'captions' (text-to-image: attributes measured on the generated
                images, seen and held-out combinations, FD, interpolation monotonicity)
                and 'retrieval' (text encoder: caption <-> image recall@k) measurements
  evaluator     builds and runs a task's declared evaluators by name (`MEASURES`)
"""

from genjax.evaluate.evaluator import (MEASURES, Quality, evaluate_workdir, make_evaluator,
                                       missing_classifier, write_best, write_result)
from genjax.evaluate.extractors import (ClassifierExtractor, Extractor, classifier_config,
                                        load_extractor, weights_sha256)
from genjax.evaluate.generative import (ClassifierEvaluator, GenerativeEvaluator, compare,
                                        default_classifier_workdir)

__all__ = ["evaluate_workdir", "make_evaluator", "missing_classifier", "classifier_config",
           "MEASURES", "compare",
           "default_classifier_workdir", "GenerativeEvaluator", "ClassifierEvaluator",
           "write_result", "write_best", "Quality", "Extractor", "ClassifierExtractor",
           "load_extractor", "weights_sha256"]
