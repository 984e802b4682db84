"""bench/pix2pix.py times the reference's pix2pix shape: its genjax side is the
reference's architecture (parameter counts of junyanz/pytorch-CycleGAN-and-pix2pix's
networks as PyTorch prints them), configs it cannot mirror on the PyTorch side are
refused, and the bench runs end to end at configs/pix2pix.py's shape (the PyTorch side in
an interpreter that has it, skipped where none has). No timing here."""

import json
import math
import types

import jax
import pytest

from benchutil import count, load_bench, run_bench, torch_python
from genjax import tasks


# sum(p.numel() for p in net.parameters()) of the reference's
# define_G(3, 3, 64, 'unet_256', norm='batch', use_dropout=True) and
# define_D(3 + 3, 64, 'basic', norm='batch'), as PyTorch 2.14 prints them.
REFERENCE_UNET_256 = 54_413_955
REFERENCE_PATCHGAN_70 = 2_768_705


def test_unet256_is_the_reference_pix2pix():
    bench = load_bench("pix2pix")
    config = bench.genjax_config("unet256")
    shape = bench.config_shape("unet256", config, 3, 3)
    assert shape == bench.Shape("unet256", image_size=256, in_channels=3, out_channels=3,
                                num_downs=8, ngf=64, dropout_blocks=3, n_layers=3, ndf=64,
                                norm="batch", batch=1)
    meta = types.SimpleNamespace(name="synthetic", image_channels={"input": 3, "target": 3},
                                 image_shape=(256, 256, 3))
    task = tasks.make(config, meta)
    state = jax.eval_shape(lambda: task.init(0))  # shapes only: nothing is computed
    assert count(state.generator.params) == REFERENCE_UNET_256
    assert count(state.discriminator.params) == REFERENCE_PATCHGAN_70


@pytest.mark.parametrize("field,value", [("model.skips", False),
                                         ("model.conditional_d", False),
                                         ("loss", "hinge"), ("gan_weight", 0.0)])
def test_configs_the_torch_side_does_not_mirror_are_refused(monkeypatch, field, value):
    bench = load_bench("pix2pix")
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


@pytest.mark.slow
def test_the_bench_runs_at_the_default_shape(tmp_path):
    python = torch_python()
    out = tmp_path / "bench.json"
    done = run_bench("pix2pix", "default", python, out)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    r = json.loads(out.read_text())["results"]["default"]
    assert r["summary"]["same_param_counts"] is True
    for key in ("g_params", "d_params"):
        assert r["genjax"][key] == r["torch"][key] > 0
    assert r["summary"]["pairs_run"] == 2 and len(r["pairs"]) == 2  # --max_pairs, even if busy
    for p in r["pairs"]:
        for side in ("genjax", "torch"):
            w = p[side]
            assert w["steps"] >= 1 and w["wall_s"] > 0
            assert w["steps_per_sec"] == pytest.approx(w["steps"] / w["wall_s"])
    s = r["summary"]
    for side in ("genjax", "torch"):  # own CPU-seconds per step: CPUs busy x wall / steps
        want = sorted(p[side]["own_cpus"] * p[side]["wall_s"] / p[side]["steps"]
                      for p in r["pairs"])
        assert s[f"{side}_cpu_s_per_step"]["min"] == pytest.approx(want[0])
        assert s[f"{side}_cpu_s_per_step"]["max"] == pytest.approx(want[-1])
        assert all(math.isfinite(v) for v in r[side]["losses"].values()), r[side]["losses"]
    assert "DIFFER" not in done.stdout
