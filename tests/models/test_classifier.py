import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax.models.classifier import Classifier


def _count(tree):
    return sum(np.size(x) for x in jax.tree.leaves(tree))


@pytest.mark.parametrize("size,channels,stages", [(8, 1, 2), (16, 1, 2), (32, 3, 3)])
def test_shapes(size, channels, stages):
    model = Classifier(num_classes=10, width=4, num_stages=stages, feature_dim=12)
    x = jnp.zeros((3, size, size, channels))
    variables = jax.eval_shape(lambda: model.init(jax.random.key(0), x, train=False))
    logits, features = jax.eval_shape(
        lambda v: model.apply(v, x, train=False, return_features=True), variables)
    assert logits.shape == (3, 10) and features.shape == (3, 12)


def test_param_count():
    # 16x16x1, width 4, 2 stages, 12 features, 10 classes. Convs (no bias): 3*3*1*4 = 36,
    # 3*3*4*4 = 144, 3*3*4*8 = 288, 3*3*8*8 = 576; BN scale+bias 2*(4+4+8+8) = 48;
    # Dense 4*4*8 -> 12 (no bias) = 1536; BN(12) 24; Dense 12 -> 10 + bias = 130.
    model = Classifier(num_classes=10, width=4, num_stages=2, feature_dim=12)
    variables = jax.jit(lambda x: model.init(jax.random.key(0), x, train=False))(
        jnp.zeros((2, 16, 16, 1)))
    assert _count(variables["params"]) == 36 + 144 + 288 + 576 + 48 + 1536 + 24 + 130
    assert _count(variables["batch_stats"]) == 2 * (4 + 4 + 8 + 8 + 12)


def test_dropout_only_in_training_and_features_nonnegative():
    model = Classifier(num_classes=10, width=4, feature_dim=12, dropout=0.5)
    x = jax.random.normal(jax.random.key(0), (4, 8, 8, 1))
    v = jax.jit(lambda x: model.init(jax.random.key(1), x, train=False))(x)
    e1, f1 = model.apply(v, x, train=False, return_features=True)
    np.testing.assert_array_equal(e1, model.apply(v, x, train=False))
    assert float(f1.min()) >= 0.0  # ReLU features
    t = [model.apply(v, x, train=True, rngs={"dropout": jax.random.key(s)},
                     mutable=["batch_stats"])[0] for s in (2, 3)]
    assert not np.allclose(t[0], t[1])
