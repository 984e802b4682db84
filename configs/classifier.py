"""The evaluation classifier of the embedded digits: genjax.evaluate's feature extractor.

    python train.py --config=configs/classifier.py --workdir=runs/classifier_digits

Takes about 40 seconds on 2 CPU cores (1,000 steps of batch 64 at 16x16) and reaches about
99-100% accuracy on the 297 test digits, written to runs/classifier_digits/eval/classifier.json.
`runs/classifier_<dataset>` is where genjax.evaluate (and a GAN run with
eval_every_steps > 0) looks for it by default, and where they train it with this recipe
(on the run's dataset) when it is not there yet; its 128-D penultimate layer is the
feature space of the Fréchet distance, KID and precision/recall. Settings: 1,000 steps of
batch 64, width 32, 128 features, dropout 0.3, AdamW at 2e-3
(genjax.tasks.classifier.evaluation_recipe).

For a real dataset, train one per dataset at the GAN's image size, e.g. MNIST at 32x32:

    python train.py --config=configs/classifier.py --workdir=runs/classifier_mnist \
        --config.dataset.name=mnist --config.image_size=32 --config.num_train_steps=5000

A quick smoke run: --config.num_train_steps=20 --config.log_every_steps=5.
"""

from genjax.tasks import classifier


def get_config():
    # The recipe lives in the library (genjax.tasks.classifier.evaluation_recipe) because
    # `python -m genjax.evaluate` trains the same classifier by itself when none exists.
    return classifier.evaluation_recipe()
