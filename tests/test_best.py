"""Keeping the best checkpoint: with evaluation on, the step with the best quality figure
is saved (also off the checkpoint grid), survives rotation and resumes, is named in
eval/best.json, and `load_run`, `genjax.sample` and `genjax.evaluate` take it.

The loop tests train the toy task of tests/fixtures/plugin_tasks/mean_image.py, whose
evaluator reports a scripted figure (best at step 3, worse the further away), so they
test the bookkeeping, not a model's dynamics."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import chex
import jax
import numpy as np
import pytest

import genjax
from genjax import tasks, viz
from genjax.checkpoint import Checkpoints, Quality
from genjax.evaluate import evaluator

ROOT = Path(__file__).resolve().parent.parent
PLUGINS = ROOT / "tests" / "fixtures" / "plugin_tasks"
SCRIPTED = "genjax.tasks.mean_image:ScriptedMeasure"
BEST_STEP = 3


# ------------------------------------------------------------- the checkpoint manager


def _state(step):
    return {"w": np.full((2, 3), float(step), np.float32), "step": np.asarray(step, np.int32)}


@pytest.mark.parametrize("mode, figures", [
    ("min", {1: 5.0, 2: 3.0, 3: 4.0, 4: 6.0, 5: 7.0}),   # an FD: falls, then rises
    ("max", {1: 5.0, 2: 7.0, 3: 4.0, 4: 3.0, 5: 2.0}),   # an accuracy: rises, then falls
])
def test_the_best_step_outlives_rotation_and_is_read_back(tmp_path, mode, figures):
    quality = Quality("eval/x", mode)
    writer = Checkpoints(tmp_path, max_to_keep=2)
    for step, value in figures.items():
        writer.save(step, _state(step), {"position": step}, {"task": "test"},
                    quality.record({"eval/x": value}))
        writer.wait()
    expected = {"step": 2, "metric": "eval/x", "value": figures[2], "mode": mode}
    try:
        assert writer.committed_steps() == [2, 4, 5]  # the best, then the newest two
        assert writer.best() == expected
        better = figures[2] - 0.5 if mode == "min" else figures[2] + 0.5
        worse = figures[2] + 0.5 if mode == "min" else figures[2] - 0.5
        assert writer.improves(quality.record({"eval/x": better}))
        assert not writer.improves(quality.record({"eval/x": worse}))
        assert not writer.improves(quality.record({"eval/x": figures[2]}))  # a tie is not
        assert not writer.improves(None)
    finally:
        writer.close()
    for read_only in (False, True):  # a later process knows the best from the disk
        reader = Checkpoints(tmp_path, max_to_keep=2, read_only=read_only)
        try:
            assert reader.best() == expected
        finally:
            reader.close()


def test_steps_without_a_finite_figure_are_never_best(tmp_path):
    quality = Quality("eval/fd", "min")
    assert quality.record({"eval/fd": float("nan")}) is None
    assert quality.record({"eval/kid": 1.0}) is None
    writer = Checkpoints(tmp_path, max_to_keep=1)
    try:
        writer.save(1, _state(1), {}, {}, quality.record({"eval/fd": float("inf")}))
        writer.save(2, _state(2), {}, {})
        writer.wait()
        assert writer.best() is None and writer.committed_steps() == [2]
    finally:
        writer.close()


def test_a_damaged_figure_counts_as_not_evaluated_and_stops_nothing(tmp_path, caplog):
    quality = Quality("eval/fd", "min")
    writer = Checkpoints(tmp_path, max_to_keep=1)
    for step, value in ((1, 2.0), (2, 1.0), (3, 3.0)):
        writer.save(step, _state(step), {}, {}, quality.record({"eval/fd": value}))
    writer.close()
    assert writer.committed_steps() == [2, 3]
    (tmp_path / "2" / "metrics" / "metrics").write_text('{"metric": "eval/f')  # truncated
    reader = Checkpoints(tmp_path, max_to_keep=1, read_only=True)
    try:
        assert reader.best()["step"] == 3
        state, _, _ = reader.restore(2, _state(0))  # the step itself still reads back
        assert int(state["step"]) == 2
    finally:
        reader.close()
    assert "step 2: its metrics file" in caplog.text


def test_each_measurement_declares_a_figure_among_its_scalars():
    from genjax.evaluate import autoencoding, generative

    gen = {"generated": {"fd": 1.0, "kid": 0.1}, "floor": {"fd": 0.5, "kid": 0.0}}
    assert generative.GenerativeEvaluator.quality == ("eval/fd", "min")
    assert "eval/fd" in generative.generative_scalars(gen)
    assert generative.ClassifierEvaluator.quality == ("eval/accuracy", "max")
    assert "eval/accuracy" in generative.classification_scalars(
        {"test_accuracy": 0.9, "test_loss": 0.3})
    ae = {"compression": {"mse": 0.01, "psnr": 26.0, "psnr_8bit": 25.9},
          "likelihood": {"elbo_nats": -100.0, "iwae_nats": -99.0}}
    for likelihood, metric in ((True, "eval/iwae"), (False, "eval/psnr")):
        measure = object.__new__(autoencoding.AutoencoderEvaluator)
        measure.likelihood = likelihood  # what __init__ derives the figure from
        assert measure.quality == Quality(metric, "max")
        assert metric in autoencoding.scalars(ae)


# ---------------------------------------------------------------------- the loop


@pytest.fixture
def plugin(monkeypatch):
    monkeypatch.setattr(tasks, "__path__", [*tasks.__path__, str(PLUGINS)])
    monkeypatch.setitem(evaluator.MEASURES, "scripted", SCRIPTED)
    yield
    sys.modules.pop("genjax.tasks.mean_image", None)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("tfds"))


def toy_config(data_dir, steps, mode="min", eval_every=1):
    c = tasks.defaults("mean_image")
    c.image_size, c.batch_size, c.num_train_steps = 8, 16, steps
    c.log_every_steps, c.sample_every_steps, c.checkpoint_every_steps = 100, 0, 4
    c.keep_checkpoints, c.eval_every_steps = 1, eval_every
    c.eval.mode, c.eval.best_step = mode, BEST_STEP
    c.dataset.data_dir = data_dir
    return c


def _score(step, mode):
    from genjax.tasks.mean_image import scripted_score

    return scripted_score(step, mode, BEST_STEP)


def _scalars(workdir, tag):
    """[(step, value)] of one TensorBoard scalar, from a workdir's event files."""
    from tensorboardX.proto.event_pb2 import Event

    out = []
    for path in sorted(workdir.glob("events.out.tfevents.*")):
        data, offset = path.read_bytes(), 0
        while offset < len(data):
            length = int.from_bytes(data[offset:offset + 8], "little")
            event = Event.FromString(data[offset + 12:offset + 12 + length])
            out += [(event.step, v.simple_value) for v in event.summary.value if v.tag == tag]
            offset += 12 + length + 4
    return sorted(out)


def _check_best(workdir, mode):
    """Steps 3 (the best, off the checkpoint grid 4, 8, 10) and 10 (the newest) are kept,
    and eval/best.json names step 3."""
    assert sorted(int(p) for p in os.listdir(workdir / "checkpoints")) == [BEST_STEP, 10]
    best = json.loads((workdir / "eval" / "best.json").read_text())
    assert best == {"step": BEST_STEP, "metric": "eval/score", "value": _score(BEST_STEP, mode),
                    "mode": mode, "checkpoint": f"checkpoints/{BEST_STEP}",
                    "eval": f"eval/step_{BEST_STEP:06d}.json"}
    result = json.loads((workdir / best["eval"]).read_text())
    assert result["step"] == BEST_STEP and result["score"] == best["value"]


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["min", "max"])
def test_the_loop_keeps_the_best_step_through_rotation(plugin, tmp_path, data_dir, mode):
    workdir = tmp_path / "run"
    genjax.train_and_evaluate(toy_config(data_dir, 10, mode), workdir)
    _check_best(workdir, mode)
    # TensorBoard: the best figure so far, at every evaluation.
    best_so_far = [(s, _score(min(s, BEST_STEP), mode)) for s in range(1, 11)]
    np.testing.assert_allclose(_scalars(workdir, "eval/best_score"), best_so_far, rtol=1e-6)
    # The kept step holds exactly the state a run of 3 steps ends with.
    three = genjax.train_and_evaluate(toy_config(data_dir, BEST_STEP, mode), tmp_path / "three")
    _, _, best = genjax.load_run(workdir, step="best")
    chex.assert_trees_all_equal(best, three)


@pytest.mark.slow
def test_a_resumed_run_keeps_the_earlier_best_and_stays_exact(plugin, tmp_path, data_dir):
    straight = genjax.train_and_evaluate(toy_config(data_dir, 10), tmp_path / "straight")
    workdir = tmp_path / "run"
    genjax.train_and_evaluate(toy_config(data_dir, 6), workdir)
    assert json.loads((workdir / "eval" / "best.json").read_text())["step"] == BEST_STEP
    resumed = genjax.train_and_evaluate(toy_config(data_dir, 10), workdir)
    _check_best(workdir, "min")
    # Steps 7-10, all worse, saw step 3's figure as the best so far.
    assert _scalars(workdir, "eval/best_score")[-4:] == [(s, _score(BEST_STEP, "min"))
                                                         for s in range(7, 11)]
    chex.assert_trees_all_equal(resumed, straight)  # the off-grid saves change nothing


def _command(module, *args):
    """`python -m <module> args` with the toy task and its measurement plugged in."""
    code = (f"import sys; from genjax import tasks; tasks.__path__.append({str(PLUGINS)!r}); "
            f"from genjax.evaluate import evaluator; "
            f"evaluator.MEASURES['scripted'] = {SCRIPTED!r}; "
            f"from {module} import main; main(sys.argv)")
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=600,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})


@pytest.mark.slow
def test_sample_and_evaluate_take_the_best_checkpoint(plugin, tmp_path, data_dir):
    workdir = tmp_path / "run"
    genjax.train_and_evaluate(toy_config(data_dir, 10), workdir)
    images = {}
    for which in ("best", "latest", str(BEST_STEP)):
        out = tmp_path / f"{which}.npz"
        proc = _command("genjax.sample", f"--workdir={workdir}", "--num=4", "--seed=1",
                        f"--out={out}", f"--checkpoint={which}")
        assert proc.returncode == 0, proc.stderr[-3000:]
        images[which] = np.load(out)["images"]
    _, task, state = genjax.load_run(workdir, step=BEST_STEP)
    expected = viz.to_uint8(task.sample(state, jax.random.key(1), 4))
    np.testing.assert_array_equal(images["best"], expected)
    np.testing.assert_array_equal(images[str(BEST_STEP)], expected)
    assert not np.array_equal(images["latest"], expected)  # step 10's mean differs

    proc = _command("genjax.evaluate.__main__", f"--workdir={workdir}", "--checkpoint=best")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"step {BEST_STEP}: score {_score(BEST_STEP, 'min'):.6g}" in proc.stdout
    result = genjax.evaluate.evaluate_workdir(workdir, step="best", write=False)
    assert result["step"] == BEST_STEP

    for which, pattern in (("7", r"no step 7; it holds steps \[3, 10\]"),
                           ("newest", "'latest'.*'best'.*step number")):
        proc = _command("genjax.sample", f"--workdir={workdir}", f"--out={tmp_path / 'x.npz'}",
                        f"--checkpoint={which}")
        assert proc.returncode == 2 and "Traceback" not in proc.stderr
        assert re.search(pattern, proc.stderr), proc.stderr


@pytest.mark.slow
def test_a_run_without_evaluation_has_no_best_and_says_how_to_get_one(plugin, tmp_path,
                                                                        data_dir):
    workdir = tmp_path / "run"
    genjax.train_and_evaluate(toy_config(data_dir, 2, eval_every=0), workdir)
    assert not (workdir / "eval").exists()
    with pytest.raises(genjax.CheckpointError,
                       match=r"no best checkpoint.*eval_every_steps=0.*--config.eval_every_steps"):
        genjax.load_run(workdir, step="best")
    proc = _command("genjax.sample", f"--workdir={workdir}", f"--out={tmp_path / 'x.npz'}",
                    "--checkpoint=best")
    assert proc.returncode == 2 and "no best checkpoint" in proc.stderr
    assert "Traceback" not in proc.stderr
