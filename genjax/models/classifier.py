"""A small image classifier: genjax's evaluation network for datasets without one.

    x -> [Conv 3x3 -> BN -> ReLU -> Conv 3x3 -> BN -> ReLU -> MaxPool 2x2] x stages
      -> flatten -> Dense(feature_dim) -> BN -> ReLU        (= the features)
      -> Dropout -> Dense(num_classes)                       (= the logits)

Stage i has width * 2^i channels. The penultimate layer (`feature_dim` ReLU units) is
what genjax.evaluate measures distances in; the logits give the class posteriors of
the Inception-Score-style score. BatchNorm uses batch statistics while training and
running averages at evaluation; under `pmap` it averages them over `bn_axis_name`.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp


def _batch_norm(train: bool, axis_name: str | None, dtype: Any) -> nn.BatchNorm:
    return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5,
                        axis_name=axis_name if train else None, dtype=dtype)


class Classifier(nn.Module):
    num_classes: int
    width: int = 32
    num_stages: int = 2
    feature_dim: int = 128
    dropout: float = 0.0
    bn_axis_name: str | None = None
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray, train: bool = True,
                 return_features: bool = False):
        """Logits [N, num_classes] (float32); with `return_features`, (logits, features)."""
        assert x.ndim == 4 and x.shape[1] % 2 ** self.num_stages == 0, x.shape
        for stage in range(self.num_stages):
            for _ in range(2):
                # No bias: the BatchNorm that follows has its own.
                x = nn.Conv(self.width * 2 ** stage, (3, 3), use_bias=False, dtype=self.dtype)(x)
                x = nn.relu(_batch_norm(train, self.bn_axis_name, self.dtype)(x))
            x = nn.max_pool(x, (2, 2), strides=(2, 2))
        x = x.reshape(x.shape[0], -1)
        x = nn.Dense(self.feature_dim, use_bias=False, dtype=self.dtype)(x)
        features = nn.relu(_batch_norm(train, self.bn_axis_name, self.dtype)(x))
        x = nn.Dropout(self.dropout, deterministic=not train)(features)
        logits = nn.Dense(self.num_classes, dtype=self.dtype)(x).astype(jnp.float32)
        if return_features:
            return logits, features.astype(jnp.float32)
        return logits
