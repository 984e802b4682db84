"""Evaluates a run's newest checkpoint (or its best, or a given step).

    python -m genjax.evaluate --workdir=DIR [--num=N] [--seed=S] [--extractor_workdir=DIR]
                              [--checkpoint=latest|best|STEP]

Runs the evaluators the run's task declares (genjax.evaluate.evaluator). A GAN run: N
images of the EMA generator (eval-mode BatchNorm) against the real images of the
config's eval.split, beside real training images against the same reference
(the floor); the features come from the genjax classifier in --extractor_workdir, by
default the config's eval.classifier_workdir or runs/classifier_<dataset>. That last
one, when it is missing, is trained there first with configs/classifier.py's recipe (about
40 s for the digits, once; it says so and where); a classifier named by the flag or the
config that is missing is an error (exit 2) that says how to train it. A classifier
run: its accuracy on eval.split. An autoencoder or VAE run: compression, features,
likelihood and sample quality (genjax.evaluate.autoencoding). Writes
<workdir>/eval/step_<N>.json and prints a table.
"""

from __future__ import annotations

import sys


def main(argv=None) -> None:
    from absl import app, flags, logging

    flags.DEFINE_string("workdir", None, "The run's workdir (as given to train.py).")
    flags.DEFINE_integer("num", None, "Generated images (default: the config's "
                         "eval.num_samples, or as many as the training split has, <= 10,000).")
    flags.DEFINE_integer("seed", None, "Seed of the noise and of the metrics' subsets "
                         "(default: the config's eval.seed).")
    flags.DEFINE_string("extractor_workdir", None, "A genjax classifier run whose features "
                        "the metrics use (default: eval.classifier_workdir or "
                        "runs/classifier_<dataset>, trained there first if missing).")
    flags.DEFINE_enum("generator", "ema", ["ema", "raw"], "Which generator weights.")
    flags.DEFINE_string("checkpoint", "latest", "Which checkpoint: 'latest' (the newest), "
                        "'best' (best evaluation figure, eval/best.json) or a step number.")
    flags.mark_flags_as_required(["workdir"])
    FLAGS = flags.FLAGS

    def run(_):
        logging.set_verbosity(logging.ERROR)  # orbax warns about read-only managers
        from genjax.errors import GenjaxError
        from genjax.evaluate.evaluator import evaluate_workdir, table
        from genjax.run import parse_checkpoint
        from genjax.loop import train_evaluation_classifier

        try:
            result = evaluate_workdir(FLAGS.workdir, FLAGS.num, FLAGS.seed,
                                      extractor_workdir=FLAGS.extractor_workdir,
                                      step=parse_checkpoint(FLAGS.checkpoint),
                                      generator=FLAGS.generator,
                                      train_classifier=train_evaluation_classifier)
        except GenjaxError as e:
            print(f"error: {e}", file=sys.stderr)
            sys.exit(2)
        for one in [result, *result.get("others", [])]:
            print(table(one))
            print(f"Wrote {one['path']}")

    app.run(run, argv)


if __name__ == "__main__":
    main()
