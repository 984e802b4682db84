"""genjax.checkpoint.Checkpoints on its own: how many steps it keeps, and a read-only
manager that reads a step back without changing the directory."""

import numpy as np

from genjax.checkpoint import Checkpoints


def _state(step):
    return {"w": np.full((2, 3), float(step), np.float32), "step": np.int32(step)}


def test_keeps_the_newest_steps_and_a_read_only_manager_reads_without_deleting(tmp_path):
    writer = Checkpoints(tmp_path, max_to_keep=2)
    for step in range(1, 6):
        writer.save(step, _state(step), {"position": step}, {"task": "test"})
        writer.wait()
    writer.close()
    assert writer.committed_steps() == [4, 5]

    reader = Checkpoints(tmp_path, max_to_keep=1, read_only=True)
    try:
        assert reader.all_steps() == [4, 5]
        state, data_state, meta = reader.restore(4, _state(0))
        np.testing.assert_array_equal(state["w"], np.full((2, 3), 4.0, np.float32))
        assert int(state["step"]) == 4
        assert data_state == {"position": 4}
        assert meta["task"] == "test" and meta["step"] == 4
        assert reader.metadata(5)["step"] == 5
    finally:
        reader.close()
    assert reader.committed_steps() == [4, 5]  # max_to_keep=1 does not apply when reading
