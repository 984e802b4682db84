"""bench/cyclegan.py times genjax's CycleGAN against bench/torch_cyclegan.py: both sides
build the same networks (parameter counts against the reference's and a hand count, and the
same outputs from the same weights), configs the torch side cannot mirror are refused, and
the bench runs end to end at a tiny shape. No timing here.

The parts that need PyTorch run it in an interpreter that has it ($GENJAX_TORCH_PYTHON,
/tmp/torchenv/bin/python or this one) and are skipped where none has."""

import json
import subprocess
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from benchutil import ROOT, count, load_bench, run_bench, torch_python
from genjax import tasks


# What the reference prints for CycleGAN's defaults ("[Network G_A] Total number of
# parameters : 11.378 M", D_A 2.765 M): sum(p.numel()) of define_G(3, 3, 64,
# 'resnet_9blocks', norm='instance') and define_D(3, 64, 'basic', norm='instance').
REFERENCE_RESNET_9 = 11_378_179
REFERENCE_PATCHGAN_70 = 2_764_737


def _counts(name: str):
    """(G, F, D_b, D_a) parameter counts of the genjax task at a bench shape, from shapes
    alone (nothing is computed)."""
    bench = load_bench("cyclegan")
    config = bench.genjax_config(name)
    c = bench.shape_channels(name)
    s = config.image_size
    meta = types.SimpleNamespace(name="synthetic", image_channels={"a": c, "b": c},
                                 image_shape=(s, s, c))
    state = jax.eval_shape(lambda: tasks.make(config, meta).init(0))
    g, d = state.generators.params, state.discriminators.params
    return count(g["g_ab"]), count(g["g_ba"]), count(d["d_b"]), count(d["d_a"])


def _hand_generator(c, ngf, blocks, bias_before_norm):
    """The ResNet generator's parameters counted from its layer list (torch_cyclegan.py)."""
    convs = [(c, ngf, 7), (ngf, 2 * ngf, 3), (2 * ngf, 4 * ngf, 3)]
    convs += [(4 * ngf, 4 * ngf, 3)] * (2 * blocks)
    convs += [(4 * ngf, 2 * ngf, 3), (2 * ngf, ngf, 3)]
    n = sum(i * o * k * k + (o if bias_before_norm else 0) for i, o, k in convs)
    return n + ngf * c * 49 + c  # the last 7x7 convolution, with its bias


def _hand_patchgan(c, ndf, layers, bias_before_norm):
    widths = [ndf * min(2 ** n, 8) for n in range(layers + 1)]
    n = c * ndf * 16 + ndf  # first convolution, with bias, no norm
    n += sum(i * o * 16 + (o if bias_before_norm else 0) for i, o in zip(widths, widths[1:]))
    return n + widths[-1] * 16 + 1  # the 1-channel score map, with bias


def test_hand_counts_are_the_references():
    assert _hand_generator(3, 64, 9, True) == REFERENCE_RESNET_9
    assert _hand_patchgan(3, 64, 3, True) == REFERENCE_PATCHGAN_70


def test_resnet256_is_the_reference_cyclegan_without_the_redundant_biases():
    bench = load_bench("cyclegan")
    config = bench.genjax_config("resnet256")
    assert bench.config_shape("resnet256", config, 3) == bench.Shape(
        "resnet256", image_size=256, channels=3, ngf=64, num_blocks=9, ndf=64, d_layers=3,
        batch=1, cycle_weight=10.0, identity_weight=0.5, pool_size=50)
    g, f, d_b, d_a = _counts("resnet256")
    # The reference's networks less one bias per channel of each convolution an instance
    # norm follows: 64 + 128 + 256 + 9·2·256 + 128 + 64 = 5,248 in G, 128 + 256 + 512 in D.
    assert g == f == REFERENCE_RESNET_9 - 5_248 == _hand_generator(3, 64, 9, False)
    assert d_b == d_a == REFERENCE_PATCHGAN_70 - 896 == _hand_patchgan(3, 64, 3, False)


def test_default_shape_is_configs_cyclegan():
    bench = load_bench("cyclegan")
    config = bench.genjax_config("default")
    assert bench.config_shape("default", config, 1) == bench.Shape(
        "default", image_size=16, channels=1, ngf=16, num_blocks=6, ndf=16, d_layers=2,
        batch=16, cycle_weight=10.0, identity_weight=0.5, pool_size=50)
    g, f, d_b, d_a = _counts("default")
    assert g == f == _hand_generator(1, 16, 6, False)
    assert d_b == d_a == _hand_patchgan(1, 16, 2, False)


@pytest.mark.parametrize("field,value", [("model.generator", "unet"), ("loss", "hinge"),
                                         ("cycle", "forward"), ("cycle_weight", 0.0),
                                         ("model.dtype", "bfloat16")])
def test_configs_the_torch_side_does_not_mirror_are_refused(field, value):
    bench = load_bench("cyclegan")
    config = bench.genjax_config("resnet256")
    bench.refuse_unmirrored(config)  # the shape itself is mirrored
    section, _, leaf = field.rpartition(".")
    (config[section] if section else config)[leaf] = value
    with pytest.raises(SystemExit, match=leaf):
        bench.refuse_unmirrored(config)


# --- The torch side -------------------------------------------------------------------

_TORCH_SCRIPT = r"""
import json, sys
import numpy as np
import torch
sys.path.insert(0, sys.argv[1])
import torch_cyclegan as tc
torch.set_num_threads(1)
spec = json.loads(sys.argv[2])
counts = {}
for bias in (True, False):
    for name, (c, ngf, blocks, ndf, layers) in spec["shapes"].items():
        counts[f"{name}/{bias}"] = [tc.count_params(tc.ResnetGenerator(c, c, ngf, blocks, bias)),
                                    tc.count_params(tc.NLayerDiscriminator(c, ndf, layers, bias))]
# The same weights in both: genjax's kernels in layer order, HWIO (transposed ones unflipped).
c, ngf, blocks, ndf, layers = spec["same"]
w = np.load(sys.argv[3])
g = tc.ResnetGenerator(c, c, ngf, blocks)
d = tc.NLayerDiscriminator(c, ndf, layers)
for prefix, net in (("g", g), ("d", d)):
    convs = [m for m in net.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))]
    assert len(convs) == int(w[prefix + "_n"]), (len(convs), int(w[prefix + "_n"]))
    for i, m in enumerate(convs):
        k = w[f"{prefix}_{i}_kernel"]
        if isinstance(m, torch.nn.ConvTranspose2d):  # a convolution of the dilated input
            k = k[::-1, ::-1].transpose(2, 3, 0, 1)
        else:
            k = k.transpose(3, 2, 0, 1)
        m.weight.data = torch.from_numpy(np.ascontiguousarray(k))
        assert (m.bias is None) == (f"{prefix}_{i}_bias" not in w.files), (prefix, i)
        if m.bias is not None:
            m.bias.data = torch.from_numpy(w[f"{prefix}_{i}_bias"])
x = torch.from_numpy(w["x"].transpose(0, 3, 1, 2).copy())
with torch.no_grad():
    out = {"g": g(x).permute(0, 2, 3, 1).numpy(), "d": d(x)[:, 0].numpy()}
np.savez(sys.argv[4], **out)
print(json.dumps(counts))
"""


def test_torch_side_builds_the_same_networks_as_genjax(tmp_path):
    python = torch_python()
    from genjax.models.cyclegan import PatchDiscriminator, ResnetGenerator

    # Same weights in both (random, large enough that every layer matters), same input.
    c, ngf, blocks, ndf, layers, size = 3, 4, 2, 4, 2, 16
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (2, size, size, c)).astype(np.float32)
    g_model = ResnetGenerator(channels=c, ngf=ngf, num_blocks=blocks)
    d_model = PatchDiscriminator(n_layers=layers, ndf=ndf, norm="instance", conditional=False)
    randomise = lambda tree: jax.tree.map(  # noqa: E731
        lambda p: jnp.asarray(rng.normal(0, 0.3, p.shape), jnp.float32), tree)
    g_params = randomise(g_model.init(jax.random.key(0), jnp.zeros((1, size, size, c)))["params"])
    d_params = randomise(d_model.init(jax.random.key(1), jnp.zeros((1, size, size, c)),
                                      jnp.zeros((1, size, size, c)), train=False)["params"])
    g_names = (["conv_in", "down_0", "down_1"]
               + [f"block_{i}/conv_{j}" for i in range(blocks) for j in (0, 1)]
               + ["up_0", "up_1", "conv_out"])
    d_names = [f"conv_{i}" for i in range(layers + 2)]
    arrays = {"x": x, "g_n": len(g_names), "d_n": len(d_names)}
    for prefix, params, names in (("g", g_params, g_names), ("d", d_params, d_names)):
        flat = {"/".join(k.key for k in path[:-1]): None for path, _ in
                jax.tree_util.tree_flatten_with_path(params)[0]}
        assert sorted(flat) == sorted(names)  # every layer is mapped, in torch's order
        for i, name in enumerate(names):
            layer = params
            for part in name.split("/"):
                layer = layer[part]
            arrays[f"{prefix}_{i}_kernel"] = np.asarray(layer["kernel"])
            if "bias" in layer:
                arrays[f"{prefix}_{i}_bias"] = np.asarray(layer["bias"])
    np.savez(tmp_path / "weights.npz", **arrays)
    spec = {"shapes": {"resnet256": [3, 64, 9, 64, 3], "default": [1, 16, 6, 16, 2]},
            "same": [c, ngf, blocks, ndf, layers]}
    done = subprocess.run([python, "-c", _TORCH_SCRIPT, str(ROOT / "bench"), json.dumps(spec),
                           str(tmp_path / "weights.npz"), str(tmp_path / "out.npz")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    counts = json.loads(done.stdout.strip().splitlines()[-1])
    assert counts["resnet256/True"] == [REFERENCE_RESNET_9, REFERENCE_PATCHGAN_70]
    g, _, d, _ = _counts("resnet256")
    assert counts["resnet256/False"] == [g, d]
    g, _, d, _ = _counts("default")
    assert counts["default/False"] == [g, d]

    out = np.load(tmp_path / "out.npz")
    want_g = np.asarray(g_model.apply({"params": g_params}, x))
    want_d = np.asarray(d_model.apply({"params": d_params}, x, x, train=False))
    assert out["g"].shape == want_g.shape and out["d"].shape == want_d.shape
    assert np.std(want_g) > 0.1 and np.std(want_d) > 0.1  # not a saturated or flat output
    np.testing.assert_allclose(out["g"], want_g, atol=2e-4)
    np.testing.assert_allclose(out["d"], want_d, rtol=1e-4, atol=1e-3)


@pytest.mark.slow
def test_the_bench_runs_at_a_tiny_shape(tmp_path):
    python = torch_python()
    out = tmp_path / "bench.json"
    done = run_bench("cyclegan", "tiny", python, out)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    r = json.loads(out.read_text())["results"]["tiny"]
    assert r["summary"]["same_param_counts"] is True
    for key in ("g_params", "g_ba_params", "d_params", "d_a_params"):
        assert r["genjax"][key] == r["torch"][key] > 0
    assert r["genjax"]["g_params"] == _hand_generator(1, 4, 1, False)
    assert r["genjax"]["d_params"] == _hand_patchgan(1, 4, 1, False)
    assert r["summary"]["pairs_run"] == 2 and len(r["pairs"]) == 2
    for p in r["pairs"]:
        assert p["genjax"]["steps_per_sec"] > 0 and p["torch"]["steps_per_sec"] > 0
    for side in ("genjax", "torch"):
        assert all(np.isfinite(v) for v in r[side]["losses"].values()), r[side]["losses"]
    assert r["genjax"]["xla_gflop"] > 0
    assert "DIFFER" not in done.stdout
