"""genjax.evaluate end to end: a tiny classifier and a tiny GAN trained by the loop, the
evaluation the loop runs, `evaluate_workdir`, the command line, and the error for a
missing classifier."""

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import ml_collections
import numpy as np
import pytest

import genjax
from genjax import tasks as tasks_lib
from genjax import evaluate, viz
from genjax.evaluate import extractors
from genjax.tasks import classifier as classifier_task

ROOT = Path(__file__).resolve().parents[2]
METRICS = {"fd", "kid", "kid_std", "precision", "recall", "is", "is_std", "class_tv"}
PROTOCOL = {"num_generated", "num_reference", "num_floor", "dataset", "reference_split",
            "floor_split", "extractor", "seed", "generator", "batchnorm", "kid",
            "precision_recall", "is", "versions"}

pytestmark = pytest.mark.slow  # end to end: trained runs, subprocesses


def classifier_config(data_dir, **overrides):
    c = ml_collections.ConfigDict(tasks_lib.defaults("classifier").to_dict())
    c.image_size, c.batch_size, c.num_train_steps = 8, 16, 4
    c.model.width, c.model.feature_dim = 4, 8
    c.log_every_steps = c.checkpoint_every_steps = c.eval_every_steps = 4
    c.dataset.data_dir = data_dir
    c.update(overrides)
    return c


def gan_config(data_dir, classifier_workdir, **overrides):
    c = ml_collections.ConfigDict(tasks_lib.defaults("gan").to_dict())
    c.image_size, c.batch_size, c.num_sample_images, c.num_train_steps = 8, 16, 4, 2
    c.model.latent_dim, c.model.g_width, c.model.d_width = 8, 4, 4
    c.log_every_steps = c.sample_every_steps = c.checkpoint_every_steps = 2
    c.eval_every_steps = 2
    c.eval.num_samples, c.eval.classifier_workdir = 40, str(classifier_workdir)
    c.dataset.data_dir = data_dir
    c.update(overrides)
    return c


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    data_dir = str(root / "tfds")
    genjax.train_and_evaluate(classifier_config(data_dir), root / "clf")
    genjax.train_and_evaluate(gan_config(data_dir, root / "clf"), root / "gan")
    return root, data_dir


def _check_generative(result, num):
    assert result["kind"] == "generative"
    for part in ("generated", "floor"):
        assert set(result[part]) == METRICS
        assert all(np.isfinite(v) for v in result[part].values())
        assert 0 <= result[part]["precision"] <= 1 and 1 <= result[part]["is"] <= 10
    p = result["protocol"]
    assert PROTOCOL <= set(p)
    assert p["num_generated"] == num and p["num_reference"] == 297 and p["num_floor"] == num
    assert (p["reference_split"], p["floor_split"]) == ("test", "train")
    assert p["generator"] == "ema" and p["batchnorm"].startswith("eval")
    assert p["extractor"]["name"] == "genjax-classifier"
    assert len(p["extractor"]["sha256"]) == 64


def test_classifier_run_writes_its_test_accuracy(runs):
    root, _ = runs
    report = json.loads((root / "clf" / "eval" / "classifier.json").read_text())
    assert report["step"] == 4 and 0 <= report["test_accuracy"] <= 1
    assert report["protocol"]["split"] == "test" and report["protocol"]["num_examples"] == 297
    assert (root / "clf" / "eval" / "step_000004.json").exists()
    assert not (root / "clf" / "samples").exists()  # a classifier draws no sample grids


def test_loop_evaluates_and_logs(runs):
    root, _ = runs
    result = json.loads((root / "gan" / "eval" / "step_000002.json").read_text())
    _check_generative(result, 40)
    extractor = extractors.ClassifierExtractor.from_workdir(root / "clf")
    assert result["protocol"]["extractor"]["sha256"] == extractor.sha256
    assert result["protocol"]["extractor"]["test_accuracy"] is not None
    assert {"eval/fd", "eval/kid", "eval/precision", "eval_floor/fd",
            "eval/best_fd"} <= _scalar_tags(root / "gan")
    # A GAN's best checkpoint is its lowest FD (the only evaluation here: step 2).
    best = json.loads((root / "gan" / "eval" / "best.json").read_text())
    assert (best["step"], best["metric"], best["mode"]) == (2, "eval/fd", "min")
    assert best["value"] == result["generated"]["fd"]


def _scalar_tags(workdir):
    """Tags of the scalars in a workdir's event files (TFRecord framing: length u64,
    its crc u32, the Event proto, its crc u32)."""
    from tensorboardX.proto.event_pb2 import Event

    tags = set()
    for path in workdir.glob("events.out.tfevents.*"):
        data, offset = path.read_bytes(), 0
        while offset < len(data):
            length = int.from_bytes(data[offset:offset + 8], "little")
            event = Event.FromString(data[offset + 12:offset + 12 + length])
            tags |= {value.tag for value in event.summary.value}
            offset += 12 + length + 4
    return tags


def test_evaluate_workdir_is_deterministic_and_complete(runs):
    root, _ = runs
    a = evaluate.evaluate_workdir(root / "gan", num=32, seed=1,
                                  extractor_workdir=root / "clf")
    _check_generative(a, 32)
    assert a["protocol"]["seed"] == 1
    saved = json.loads(Path(a["path"]).read_text())
    assert saved["generated"] == a["generated"]
    b = evaluate.evaluate_workdir(root / "gan", num=32, seed=1,
                                  extractor_workdir=root / "clf", write=False)
    assert b["generated"] == a["generated"] and b["floor"] == a["floor"]
    # The measured images are exactly those `genjax.sample` draws with that seed.
    _, task, state = genjax.load_run(root / "gan")
    images = np.asarray(task.sample(state, jax.random.key(1), 32))
    np.testing.assert_array_equal(genjax.sample_from_workdir(root / "gan", 32, seed=1),
                                  viz.to_uint8(images))


def test_extractor_checksum_and_resizing(runs):
    root, _ = runs
    extractor = extractors.ClassifierExtractor.from_workdir(root / "clf")
    state = extractor._state
    assert extractors.weights_sha256(state.model.params) == extractors.weights_sha256(
        jax.tree.map(np.copy, state.model.params))
    nudged = jax.tree.map(lambda x: x, state.model.params)
    nudged["Dense_1"]["bias"] = nudged["Dense_1"]["bias"] + np.float32(1e-7)
    assert extractors.weights_sha256(nudged) != extractors.weights_sha256(state.model.params)
    images = np.random.default_rng(0).uniform(-1, 1, (3, 16, 16, 1)).astype(np.float32)
    features, logits = extractor.features_and_logits(images)  # 16x16 into an 8x8 network
    assert features.shape == (3, 8) and logits.shape == (3, 10)


def test_missing_classifier_fails_before_training_with_the_command(runs, tmp_path):
    root, data_dir = runs
    workdir = tmp_path / "gan"
    with pytest.raises(genjax.CheckpointError, match="configs/classifier.py"):
        genjax.train_and_evaluate(gan_config(data_dir, tmp_path / "nothing"), workdir)
    assert not workdir.exists()


def _run(args, cwd):
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True,
                          env=os.environ.copy(), timeout=600)


def _unnamed_copy(root, tmp_path):
    """tmp_path/gan: the fixture's GAN run with no classifier named in its config, so that
    genjax.evaluate looks in runs/classifier_digits (relative to tmp_path)."""
    config = json.loads((root / "gan" / "config.json").read_text())
    config["eval"]["classifier_workdir"] = ""
    (tmp_path / "gan").mkdir()
    os.symlink(root / "gan" / "checkpoints", tmp_path / "gan" / "checkpoints")
    (tmp_path / "gan" / "config.json").write_text(json.dumps(config))
    return tmp_path / "gan"


def test_command_line(runs, tmp_path):
    root, _ = runs
    proc = _run(["-m", "genjax.evaluate", f"--workdir={root / 'gan'}", "--num=24",
                 f"--extractor_workdir={root / 'clf'}"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "real train (floor)" in proc.stdout
    _check_generative(json.loads((root / "gan" / "eval" / "step_000002.json").read_text()), 24)
    # A classifier the user named that is not there: exit 2, one paragraph with the
    # command to train it, no traceback, and nothing trained in its place.
    _unnamed_copy(root, tmp_path)
    proc = _run(["-m", "genjax.evaluate", "--workdir=gan", "--extractor_workdir=named_clf"],
                cwd=tmp_path)
    assert proc.returncode == 2
    assert "No trained classifier in named_clf" in proc.stderr
    assert "--workdir=named_clf" in proc.stderr and "configs/classifier.py" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "named_clf").exists() and not (tmp_path / "runs").exists()


def _tiny_recipe(monkeypatch=None):
    """configs/classifier.py's recipe shrunk to a few steps at 8x8 (the code that shrinks
    it, for a subprocess or, with `monkeypatch`, in this process)."""
    code = ("import genjax.tasks.classifier as c; recipe = c.evaluation_recipe\n"
            "def tiny():\n"
            "    r = recipe(); r.image_size, r.batch_size, r.num_train_steps = 8, 16, 4\n"
            "    r.model.width, r.model.feature_dim = 4, 8\n"
            "    r.log_every_steps = r.checkpoint_every_steps = r.eval_every_steps = 4\n"
            "    return r\n")
    if monkeypatch is None:
        return code + "c.evaluation_recipe = tiny\n"
    scope = {}
    exec(code, scope)
    monkeypatch.setattr(classifier_task, "evaluation_recipe", scope["tiny"])


def _snapshot(folder):
    return {p: p.stat().st_mtime_ns for p in Path(folder).rglob("*")}


def test_command_line_trains_the_missing_default_classifier_once(runs, tmp_path):
    """A fresh checkout: `python -m genjax.evaluate --workdir=...` with no classifier
    trains runs/classifier_<dataset> (configs/classifier.py's recipe, shrunk here), says
    so and where, then evaluates with it; a second evaluation reuses it untouched."""
    root, _ = runs
    _unnamed_copy(root, tmp_path)
    main = (_tiny_recipe() + "import sys; from genjax.evaluate.__main__ import main; "
            "main(['evaluate', '--workdir=gan', '--num=24'])")
    proc = _run(["-c", main], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    where = tmp_path / "runs" / "classifier_digits"
    assert f"No evaluation classifier in runs/classifier_digits ({where})" in proc.stdout
    assert "Trained the evaluation classifier in runs/classifier_digits" in proc.stdout
    assert "real train (floor)" in proc.stdout
    trained = extractors.ClassifierExtractor.from_workdir(where)
    assert trained.step == 4 and trained.dataset == "digits"
    result = json.loads((tmp_path / "gan" / "eval" / "step_000002.json").read_text())
    assert result["protocol"]["extractor"]["workdir"] == str(where)
    assert result["protocol"]["extractor"]["sha256"] == trained.sha256
    before = _snapshot(where)
    proc = _run(["-c", main], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "evaluation classifier" not in proc.stdout and "real train (floor)" in proc.stdout
    assert _snapshot(where) == before


def test_loop_trains_the_missing_default_classifier_first(runs, tmp_path, monkeypatch,
                                                          capsys):
    """eval_every_steps on and no classifier named or trained: the run trains the default
    one first, as genjax.evaluate does, and evaluates with it."""
    _, data_dir = runs
    _tiny_recipe(monkeypatch)
    monkeypatch.chdir(tmp_path)
    genjax.train_and_evaluate(gan_config(data_dir, ""), tmp_path / "gan")
    out = capsys.readouterr().out
    where = tmp_path / "runs" / "classifier_digits"
    assert f"No evaluation classifier in runs/classifier_digits ({where})" in out
    result = json.loads((tmp_path / "gan" / "eval" / "step_000002.json").read_text())
    assert result["protocol"]["extractor"]["workdir"] == str(where)
    assert extractors.ClassifierExtractor.from_workdir(where).step == 4


def test_classifier_config_end_to_end(tmp_path, runs):
    _, data_dir = runs
    workdir = tmp_path / "clf"
    proc = _run([str(ROOT / "train.py"), f"--config={ROOT / 'configs' / 'classifier.py'}",
                 f"--workdir={workdir}", "--config.num_train_steps=3",
                 "--config.log_every_steps=3", f"--config.dataset.data_dir={data_dir}",
                 "--config.image_size=8", "--config.batch_size=16", "--config.model.width=4",
                 "--config.model.feature_dim=8"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "step 3/3" in proc.stdout and "eval/accuracy" in proc.stdout
    report = json.loads((workdir / "eval" / "classifier.json").read_text())
    assert report["step"] == 3 and "test_accuracy" in report


class _Projection(evaluate.Extractor):
    """A stand-in for another network (e.g. Inception-v3): fixed random features, no head."""

    name, sha256, input_shape = "projection", "0" * 64, (8, 8, 1)

    def __init__(self, dataset="digits"):
        self.dataset = dataset
        self.matrix = np.random.default_rng(0).normal(size=(64, 6)).astype(np.float32)

    def _forward(self, images):
        return images.reshape(images.shape[0], -1) @ self.matrix, None


def test_any_extractor_plugs_in(runs):
    root, _ = runs
    result = evaluate.evaluate_workdir(root / "gan", num=20, extractor=_Projection(),
                                       write=False)
    assert set(result["generated"]) == {"fd", "kid", "kid_std", "precision", "recall"}
    assert result["protocol"]["extractor"] == {"name": "projection", "sha256": "0" * 64,
                                               "input_shape": [8, 8, 1]}
    with pytest.raises(genjax.ConfigError, match="trained on 'mnist'"):
        evaluate.evaluate_workdir(root / "gan", num=20, extractor=_Projection("mnist"))


def test_raw_generator_is_measured_on_the_trained_weights(runs):
    """--generator=raw: the same protocol on the generator's own weights, not the EMA's
    (after two steps the two differ), against the same real floor."""
    root, _ = runs
    kw = dict(num=32, seed=1, extractor_workdir=root / "clf", write=False)
    raw = evaluate.evaluate_workdir(root / "gan", generator="raw", **kw)
    ema = evaluate.evaluate_workdir(root / "gan", **kw)
    assert raw["protocol"]["generator"] == "raw" and ema["protocol"]["generator"] == "ema"
    assert raw["floor"] == ema["floor"]
    assert raw["generated"]["fd"] != ema["generated"]["fd"]
