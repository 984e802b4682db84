"""The evaluation classifier of the embedded digits: genjax.evaluate's feature extractor.

    python train.py --config=configs/classifier.py --workdir=runs/classifier_digits

Takes about 40 seconds on 2 CPU cores (1,000 steps of batch 64 at 16x16) and reaches about
99-100% accuracy on the 297 test digits, written to runs/classifier_digits/eval/classifier.json.
`runs/classifier_<dataset>` is where genjax.evaluate (and a GAN run with
eval_every_steps > 0) looks for it by default; its 128-D penultimate layer is the
feature space of the Fréchet distance, KID and precision/recall.

For a real dataset, train one per dataset at the GAN's image size, e.g. MNIST at 32x32:

    python train.py --config=configs/classifier.py --workdir=runs/classifier_mnist \
        --config.dataset.name=mnist --config.image_size=32 --config.num_train_steps=5000

A quick smoke run: --config.num_train_steps=20 --config.log_every_steps=5.
"""

from genjax.tasks import classifier


def get_config():
    config = classifier.defaults()
    config.dataset.name = "digits"
    config.image_size = 16
    config.num_train_steps = 1000
    config.batch_size = 64
    config.eval_every_steps = 500
    config.checkpoint_every_steps = 500
    config.model.width = 32
    config.model.feature_dim = 128
    config.model.dropout = 0.3
    config.learning_rate = 2e-3
    return config
