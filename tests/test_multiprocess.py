"""Multi-process training, tested as processes on loopback: `train.py` started twice with
2 fake CPU devices each (JAX's CPU collectives across processes go over gloo) against one
process with 4 devices, on the same global batch and seed.

- The two processes together train exactly what one process does on as many devices
  (the pipeline's share of each global batch, gradients and BatchNorm statistics over all
  4 devices), to the tolerance of the 8-devices-vs-1 tests; only process 0 writes the
  logs, pictures and config.json.
- A process killed with `kill -9` makes the other stop within a bounded time (JAX's
  heartbeat) with JAX's message naming a dead task, instead of hanging; the same command
  rerun on both resumes and ends bit for bit where an uninterrupted 2-process run ends.
- SIGTERM sent to one process stops both at the same step, after a committed checkpoint.

The runs are slow (each compiles; they share one compilation cache); the checks of the
pipeline's shares and of the set-up are quick.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import chex
import jax
import numpy as np
import pytest

import genjax
from genjax import parallel
from genjax.data import pipeline as pipeline_lib
from genjax.errors import DistributedError


ROOT = Path(__file__).resolve().parent.parent
STEPS, EVERY = 6, 2  # steps of a run; a checkpoint every EVERY steps
TIMEOUT = 420  # seconds a subprocess may take before its test fails
HEARTBEAT = 10  # --heartbeat_timeout of the runs: a silent process is dead after this long
TINY = ["--config.image_size=16", "--config.batch_size=16", "--config.model.g_width=4",
        "--config.model.d_width=4", "--config.model.latent_dim=8",
        "--config.num_sample_images=16", "--config.model.d_dropout=0.0"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """The embedded digits, prepared once here (not by two processes at once)."""
    path = tmp_path_factory.mktemp("tfds")
    pipeline_lib.prepare_embedded("digits", path)
    return str(path)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    cache = tmp_path_factory.mktemp("xla_cache")
    return {**os.environ, "JAX_PLATFORMS": "cpu", "GENJAX_COMPILATION_CACHE": str(cache),
            "PYTHONUNBUFFERED": "1"}


def devices(env, n: int) -> dict:
    return {**env, "XLA_FLAGS": f"--xla_force_host_platform_device_count={n}"}


def args(workdir, data_dir, *extra, steps=STEPS):
    return [sys.executable, str(ROOT / "train.py"), f"--config={ROOT / 'configs' / 'dcgan.py'}",
            f"--workdir={workdir}", f"--config.num_train_steps={steps}",
            "--config.log_every_steps=1", f"--config.checkpoint_every_steps={EVERY}",
            "--config.sample_every_steps=3", f"--config.dataset.data_dir={data_dir}",
            *TINY, *extra]


class Proc:
    """One process of a run, its stdout read line by line, killed after TIMEOUT."""

    def __init__(self, argv, env, log: Path):
        self.log = log
        self.popen = subprocess.Popen(argv, cwd=ROOT, env=env, text=True, bufsize=1,
                                      stdout=subprocess.PIPE, stderr=open(log, "w"))
        self.lines: list[str] = []
        self.watchdog = threading.Timer(TIMEOUT, self.popen.kill)
        self.watchdog.start()

    def wait_for(self, pattern: str) -> str | None:
        for line in self.popen.stdout:
            self.lines.append(line)
            if re.search(pattern, line):
                return line
        return None

    def finish(self):
        self.lines.append(self.popen.stdout.read())
        code = self.popen.wait()
        self.watchdog.cancel()
        return code, "".join(self.lines), self.log.read_text()


def start_two(workdir, data_dir, env, *extra, steps=STEPS, logs: Path) -> list[Proc]:
    """Both processes of a 2-process run (2 devices each), coordinated on a free port."""
    address = f"--coordinator_address=127.0.0.1:{free_port()}"
    return [Proc(args(workdir, data_dir, address, "--num_processes=2", f"--process_id={i}",
                      f"--heartbeat_timeout={HEARTBEAT}", "--initialization_timeout=120",
                      *extra, steps=steps),
                 devices(env, 2), logs / f"process{i}-{time.monotonic_ns()}.log")
            for i in range(2)]


def run_two(workdir, data_dir, env, *extra, steps=STEPS, logs: Path):
    procs = start_two(workdir, data_dir, env, *extra, steps=steps, logs=logs)
    return [p.finish() for p in procs]


def resumed_from(stdout: str) -> int | None:
    match = re.search(r"Resumed from \S+/(\d+) ", stdout)
    return int(match.group(1)) if match else None


def data_state(workdir, step):
    return json.loads((Path(workdir) / "checkpoints" / str(step) / "data" / "metadata")
                      .read_text())


# ------------------------------------------------------------------------- quick


def toy_pipeline(**kwargs):
    """A pipeline over 50 numbered 4x4 images (image i is filled with i), batch 8."""
    source = [{"image": np.full((4, 4, 1), i, np.uint8), "label": i} for i in range(50)]
    meta = pipeline_lib.DatasetMeta("toy", (4, 4, 1), 50, {"train": 50})
    return pipeline_lib.pipeline_from_source(source, meta, "train", global_batch_size=8,
                                             image_size=4, seed=3, num_threads=0, **kwargs)


def test_the_process_shares_make_up_one_process_batches():
    """Process p of 2 feeds rows [4p, 4p+4) of every global batch, as one process of 4
    devices would lay them out, across epoch boundaries (6 batches an epoch, 2 left over)
    and after a restore."""
    one = toy_pipeline(num_devices=4)
    shares = [toy_pipeline(num_devices=2, num_processes=2, process_index=p) for p in range(2)]
    assert [s.steps_per_epoch for s in shares] == [one.steps_per_epoch] * 2 == [6, 6]
    assert [s.per_device_batch for s in shares] == [one.per_device_batch] * 2 == [2, 2]
    seen = set()
    for step in range(15):
        if step == 9:  # a fresh pair of pipelines, put where the first pair was
            states = [s.get_state() for s in shares]
            shares = [toy_pipeline(num_devices=2, num_processes=2, process_index=p)
                      for p in range(2)]
            for s, state in zip(shares, states):
                s.set_state(state)
        whole, parts = next(one), [next(s) for s in shares]
        assert parts[0]["image"].shape == (2, 2, 4, 4, 1)
        for key in ("image", "label"):
            np.testing.assert_array_equal(np.concatenate([p[key] for p in parts]), whole[key])
        if step < 6:
            seen.update(whole["label"].ravel().tolist())
    assert len(seen) == 48  # one epoch: 6 batches of distinct examples


def test_the_process_shares_of_a_jittered_unpaired_folder(tmp_path):
    """The other layouts (here 'unpaired': two domains, each its own epochs, random crops
    and mirroring drawn per example) split the same way."""
    from PIL import Image

    from genjax.data import DataSpec, serve
    rng = np.random.default_rng(0)
    for split, count in {"trainA": 8, "trainB": 12, "testA": 2, "testB": 2}.items():
        (tmp_path / split).mkdir()
        for i in range(count):
            Image.fromarray(rng.integers(0, 256, (9, 9, 3), dtype=np.uint8)).save(
                tmp_path / split / f"{i:02d}.png")
    spec = DataSpec(name=f"folder:{tmp_path}", layout="unpaired", split="train",
                    eval_split="test", image_size=6)
    one = serve.training_pipeline(spec, global_batch_size=4, num_devices=4, seed=1,
                                  num_threads=0)
    shares = [serve.training_pipeline(spec, global_batch_size=4, num_devices=2, seed=1,
                                      num_threads=0, num_processes=2, process_index=p)
              for p in range(2)]
    for _ in range(7):  # A wraps after 2 batches, B after 3
        whole, parts = next(one), [next(s) for s in shares]
        assert whole.keys() == parts[0].keys() == {"a", "b", "a_label", "b_label"}
        for key in whole:
            np.testing.assert_array_equal(np.concatenate([p[key] for p in parts]), whole[key])


def test_a_global_batch_the_devices_of_all_processes_do_not_divide_is_refused():
    with pytest.raises(ValueError, match=r"not divisible by 12 devices \(2 processes x 6 "):
        toy_pipeline(num_devices=6, num_processes=2, process_index=0)
    with pytest.raises(ValueError, match="drop_remainder=True"):
        toy_pipeline(num_devices=2, num_processes=2, process_index=1, drop_remainder=False)


def test_one_process_without_settings_is_left_alone(monkeypatch):
    for name in (parallel.ENV_COORDINATOR, parallel.ENV_NUM_PROCESSES, parallel.ENV_PROCESS_ID):
        monkeypatch.delenv(name, raising=False)
    assert parallel.initialize() is False
    monkeypatch.setenv(parallel.ENV_NUM_PROCESSES, "1")
    assert parallel.initialize() is False
    assert parallel.process_rows(16) == (0, 16)  # 8 local devices, one process


@pytest.mark.parametrize("settings,pattern", [
    (dict(num_processes=2, process_id=2), "process index must be in 0..num_processes-1"),
    (dict(num_processes=2, process_id=-1), "process index must be in 0..num_processes-1"),
])
def test_bad_process_settings_fail_with_the_fix(settings, pattern):
    with pytest.raises(DistributedError, match=pattern):
        parallel.initialize("127.0.0.1:1", **settings)


def test_a_malformed_environment_variable_is_named(monkeypatch):
    monkeypatch.setenv(parallel.ENV_PROCESS_ID, "first")
    with pytest.raises(DistributedError, match="JAX_PROCESS_ID='first' must be an integer"):
        parallel.initialize("127.0.0.1:1", 2)


# -------------------------------------------------------------- 2 processes x 2 devices


@pytest.fixture(scope="module")
def one_process(tmp_path_factory, data_dir, env):
    """The reference: one process with 4 devices."""
    workdir = tmp_path_factory.mktemp("one") / "run"
    proc = subprocess.run(args(workdir, data_dir), cwd=ROOT, env=devices(env, 4),
                          capture_output=True, text=True, timeout=TIMEOUT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "on 4 device(s)" in proc.stdout
    return workdir


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory, data_dir, env):
    """An uninterrupted 2-process run: [(returncode, stdout, stderr)] per process."""
    root = tmp_path_factory.mktemp("two")
    results = run_two(root / "run", data_dir, env, logs=root)
    for i, (code, _, stderr) in enumerate(results):
        assert code == 0, f"process {i}: {stderr[-3000:]}"
    return root / "run", results


@pytest.mark.slow
def test_two_processes_train_as_one_process_on_as_many_devices(one_process, two_processes):
    workdir, results = two_processes
    assert "on 4 devices (2 processes x 2)" in results[0][1]
    _, _, two = genjax.load_run(workdir, STEPS)
    _, _, one = genjax.load_run(one_process, STEPS)
    assert int(two.step) == STEPS
    # The 8-devices-vs-1 tolerance (tests/tasks/taskutil.py): the sums over devices run
    # in another order (gloo across processes), nothing else differs.
    chex.assert_trees_all_close(two, one, atol=2e-5, rtol=2e-4)
    assert data_state(workdir, STEPS) == data_state(one_process, STEPS)
    # Not vacuous: training moved the parameters away from their initial values.
    config, task, _ = genjax.load_run(workdir, STEPS)
    start = task.init(config.seed)
    moved = [float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))
             for a, b in zip(jax.tree.leaves(two), jax.tree.leaves(start))
             if np.issubdtype(np.asarray(a).dtype, np.floating)]
    assert max(moved) > 1e-3


@pytest.mark.slow
def test_only_process_zero_writes_logs_pictures_and_config(one_process, two_processes):
    workdir, results = two_processes
    (code0, out0, _), (code1, out1, _) = results
    assert len(re.findall(r"^step \d+/", out0, re.M)) == STEPS
    assert not re.search(r"^(step \d+/|Training |First step)", out1, re.M)
    assert len(list(workdir.glob("events.out.tfevents.*"))) == 1
    assert sorted(p.name for p in (workdir / "samples").iterdir()) == \
        sorted(p.name for p in (one_process / "samples").iterdir())
    assert json.loads((workdir / "config.json").read_text())["batch_size"] == 16
    assert sorted(p.name for p in (workdir / "checkpoints").iterdir()) == ["2", "4", "6"]


@pytest.mark.slow
def test_a_dead_process_stops_the_other_and_a_rerun_resumes_exactly(tmp_path, data_dir, env,
                                                                     two_processes):
    workdir = tmp_path / "run"
    procs = start_two(workdir, data_dir, env, logs=tmp_path)
    # Step 5 is logged after step 4's save started, which waited for step 2's commit.
    assert procs[0].wait_for(r"^step 5/") is not None, procs[0].finish()[2][-3000:]
    procs[1].popen.kill()
    killed_at = time.monotonic()
    code, _, stderr = procs[0].finish()
    waited = time.monotonic() - killed_at
    procs[1].finish()
    assert code != 0
    # JAX's own message (jaxlib), the same in JAX 0.10 and 0.12.
    assert "another task died" in stderr, stderr[-3000:]
    # Bounded by the heartbeat, not by TIMEOUT: here 10 s of silence plus slack.
    assert waited < 12 * HEARTBEAT, waited

    results = run_two(workdir, data_dir, env, logs=tmp_path)
    for i, (code, _, stderr) in enumerate(results):
        assert code == 0, f"process {i}: {stderr[-3000:]}"
    assert resumed_from(results[0][1]) in (2, 4)
    _, _, state = genjax.load_run(workdir, STEPS)
    _, _, expected = genjax.load_run(two_processes[0], STEPS)
    chex.assert_trees_all_equal(state, expected)
    assert data_state(workdir, STEPS) == data_state(two_processes[0], STEPS)


@pytest.mark.slow
def test_sigterm_to_one_process_stops_both_at_the_same_step(tmp_path, data_dir, env):
    workdir = tmp_path / "run"
    steps = 400  # far more than run before the signal is seen
    procs = start_two(workdir, data_dir, env, steps=steps, logs=tmp_path)
    assert procs[0].wait_for(r"^step 1/") is not None, procs[0].finish()[2][-3000:]
    procs[1].popen.send_signal(signal.SIGTERM)
    (code0, out0, err0), (code1, _, err1) = [p.finish() for p in procs]
    assert code0 == code1 == 128 + signal.SIGTERM, (err0[-2000:], err1[-2000:])
    stopped = [int(re.search(r"Stopped by .* at step (\d+)/", e).group(1)) for e in (err0, err1)]
    assert stopped[0] == stopped[1] < steps
    assert "another process" in err0 and "SIGTERM" in err1
    saved = sorted(int(p.name) for p in (workdir / "checkpoints").iterdir()
                   if p.name.isdigit())
    assert saved[-1] == stopped[0]  # committed there, and nothing after it
