"""bench/pix2pix.py times the reference's pix2pix shape: its genjax side is the
reference's architecture (parameter counts of junyanz/pytorch-CycleGAN-and-pix2pix's
networks as PyTorch prints them), and configs it cannot mirror on the PyTorch side are
refused. No timing here."""

import importlib.util
import pathlib
import sys
import types

import jax
import numpy as np
import pytest

from genjax import tasks

ROOT = pathlib.Path(__file__).resolve().parent.parent

# sum(p.numel() for p in net.parameters()) of the reference's
# define_G(3, 3, 64, 'unet_256', norm='batch', use_dropout=True) and
# define_D(3 + 3, 64, 'basic', norm='batch'), as PyTorch 2.14 prints them.
REFERENCE_UNET_256 = 54_413_955
REFERENCE_PATCHGAN_70 = 2_768_705


def _bench():
    spec = importlib.util.spec_from_file_location("bench_pix2pix", ROOT / "bench" / "pix2pix.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks its module up there
    spec.loader.exec_module(module)
    return module


def _count(tree) -> int:
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


def test_unet256_is_the_reference_pix2pix():
    bench = _bench()
    config = bench.genjax_config("unet256")
    shape = bench.config_shape("unet256", config, 3, 3)
    assert shape == bench.Shape("unet256", image_size=256, in_channels=3, out_channels=3,
                                num_downs=8, ngf=64, dropout_blocks=3, n_layers=3, ndf=64,
                                norm="batch", batch=1)
    meta = types.SimpleNamespace(name="synthetic", image_channels={"input": 3, "target": 3},
                                 image_shape=(256, 256, 3))
    task = tasks.make(config, meta)
    state = jax.eval_shape(lambda: task.init(0))  # shapes only: nothing is computed
    assert _count(state.generator.params) == REFERENCE_UNET_256
    assert _count(state.discriminator.params) == REFERENCE_PATCHGAN_70


@pytest.mark.parametrize("field,value", [("model.skips", False),
                                         ("model.conditional_d", False),
                                         ("loss", "hinge"), ("gan_weight", 0.0)])
def test_configs_the_torch_side_does_not_mirror_are_refused(monkeypatch, field, value):
    bench = _bench()
    from genjax.tasks import pix2pix

    plain = pix2pix.defaults

    def departing():
        c = plain()
        section, _, leaf = field.rpartition(".")
        (c[section] if section else c)[leaf] = value
        return c

    monkeypatch.setattr(pix2pix, "defaults", departing)
    with pytest.raises(SystemExit, match=field.split(".")[-1]):
        bench.genjax_config("unet256")
