"""Checkpoint restore in process, on a small state: what the loop does with a step that
holds a NaN or an input-pipeline position that parses but does not fit. (The slow
subprocess tests in test_reliability.py cover the same code through train.py.)"""

import re

import numpy as np
import orbax.checkpoint as ocp
import pytest

import genjax
from genjax import data, loop
from genjax.checkpoint import Checkpoints


def _state(value):
    return {"w": np.full((3, 2), value, np.float32), "step": np.asarray(7, np.int32)}


def _pipeline(data_dir):
    return data.make_pipeline("digits", "train", global_batch_size=16, num_devices=1,
                              image_size=8, seed=0, data_dir=data_dir)


def _save_raw(checkpoints, step, state, data_state):
    """Writes a step with orbax directly, past the checks of `Checkpoints.save`, like a
    file damaged or edited after it was written."""
    checkpoints.manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), data=ocp.args.JsonSave(data_state),
        meta=ocp.args.JsonSave({"step": step, "versions": {}})), force=True)
    checkpoints.manager.wait_until_finished()


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("tfds"))


@pytest.fixture
def workdir_with_good_step_1(tmp_path, data_dir):
    pipeline = _pipeline(data_dir)
    next(pipeline), next(pipeline)
    checkpoints = Checkpoints(tmp_path / "run" / "checkpoints")
    checkpoints.save(1, _state(1.0), pipeline.get_state(), {"task": "test"})
    checkpoints.wait()
    return tmp_path / "run", checkpoints, data_dir, pipeline.get_state()


def test_save_refuses_nonfinite_values(tmp_path):
    checkpoints = Checkpoints(tmp_path / "checkpoints")
    try:
        with pytest.raises(genjax.NonFiniteError, match=r"step 1: .*\['w'\]"):
            checkpoints.save(1, _state(np.nan), {}, {})
    finally:
        checkpoints.close()
    assert checkpoints.committed_steps() == []


@pytest.mark.parametrize("damage", ["nan", "pipeline"])
def test_damaged_newest_step_is_moved_aside_and_the_older_one_restored(
        workdir_with_good_step_1, damage):
    """Step 2 holds a NaN, or a pipeline position {'foo': 'bar'} (valid JSON, not a
    position): restoring it raises CorruptCheckpointError, and the loop's restore falls
    back to step 1 (state and pipeline position), moving step 2 aside, not deleting it."""
    workdir, checkpoints, data_dir, position_1 = workdir_with_good_step_1
    if damage == "nan":
        _save_raw(checkpoints, 2, _state(np.nan), position_1)
        reason = r"non-finite values in \['w'\]"
    else:
        _save_raw(checkpoints, 2, _state(2.0), {"foo": "bar"})
        reason = re.escape("unusable input pipeline state {'foo': 'bar'}")
    target = _state(0.0)
    try:
        with pytest.raises(genjax.CorruptCheckpointError, match=reason):
            loop._restore_step(checkpoints, 2, target, _pipeline(data_dir))
        pipeline = _pipeline(data_dir)
        state, step = loop._restore_newest(checkpoints, target, pipeline, workdir)
    finally:
        checkpoints.close()
    assert step == 1
    np.testing.assert_array_equal(state["w"], _state(1.0)["w"])
    assert pipeline.get_state() == position_1
    assert checkpoints.committed_steps() == [1]
    moved = list((workdir / "checkpoints_corrupt").iterdir())
    assert [p.name.split("-")[0] for p in moved] == ["2"]


def test_nothing_restorable_changes_nothing(tmp_path, data_dir):
    workdir = tmp_path / "run"
    checkpoints = Checkpoints(workdir / "checkpoints")
    _save_raw(checkpoints, 1, _state(np.nan), {"next_index": 0})
    try:
        with pytest.raises(genjax.CheckpointError, match="No checkpoint .* can be read back"):
            loop._restore_newest(checkpoints, _state(0.0), _pipeline(data_dir), workdir)
    finally:
        checkpoints.close()
    assert checkpoints.committed_steps() == [1]
    assert not (workdir / "checkpoints_corrupt").exists()


def _numbered_state(step):
    return {"w": np.full((2, 3), float(step), np.float32), "step": np.int32(step)}


def test_keeps_the_newest_steps_and_a_read_only_manager_reads_without_deleting(tmp_path):
    writer = Checkpoints(tmp_path, max_to_keep=2)
    for step in range(1, 6):
        writer.save(step, _numbered_state(step), {"position": step}, {"task": "test"})
        writer.wait()
    writer.close()
    assert writer.committed_steps() == [4, 5]

    reader = Checkpoints(tmp_path, max_to_keep=1, read_only=True)
    try:
        assert reader.all_steps() == [4, 5]
        state, data_state, meta = reader.restore(4, _numbered_state(0))
        np.testing.assert_array_equal(state["w"], np.full((2, 3), 4.0, np.float32))
        assert int(state["step"]) == 4
        assert data_state == {"position": 4}
        assert meta["task"] == "test" and meta["step"] == 4
        assert reader.metadata(5)["step"] == 5
    finally:
        reader.close()
    assert reader.committed_steps() == [4, 5]  # max_to_keep=1 does not apply when reading
