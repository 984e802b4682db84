"""One live run per workdir (genjax.lock)."""

import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from genjax import lock
from genjax.errors import GenjaxError


def _record(workdir):
    text = (workdir / lock.LOCK_NAME).read_text()
    return json.loads(text) if text.strip() else None


def test_lock_records_the_holder_and_is_emptied_on_release(tmp_path):
    workdir = tmp_path / "run"
    with lock.hold(workdir):
        held = _record(workdir)
        assert held["pid"] == os.getpid()
        assert held["host"] and held["started"] and held["command"]
    assert _record(workdir) is None
    with lock.hold(workdir):  # free again
        pass


def test_second_holder_is_refused_naming_the_first(tmp_path):
    with lock.hold(tmp_path):
        with pytest.raises(lock.WorkdirInUseError, match=f"PID {os.getpid()}") as info:
            with lock.hold(tmp_path):
                pytest.fail("a second holder got the lock")
        assert isinstance(info.value, GenjaxError)  # train.py: one paragraph, exit 2
        assert "another --workdir" in str(info.value)
        assert _record(tmp_path)["pid"] == os.getpid()  # the refusal changed nothing


def test_lock_left_by_a_killed_process_is_taken_over_with_a_warning(tmp_path, caplog):
    script = textwrap.dedent(f"""
        import os, signal, sys
        from genjax import lock
        with lock.hold({str(tmp_path)!r}):
            print("held", flush=True)
            os.kill(os.getpid(), signal.SIGKILL)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    dead = _record(tmp_path)
    assert dead is not None and dead["pid"] != os.getpid()  # its record stayed behind
    with caplog.at_level("WARNING"):
        with lock.hold(tmp_path):
            assert _record(tmp_path)["pid"] == os.getpid()
    assert f"PID {dead['pid']}" in caplog.text and "no longer running" in caplog.text


def test_live_holder_in_another_process_blocks(tmp_path):
    script = textwrap.dedent(f"""
        import sys, time
        from genjax import lock
        with lock.hold({str(tmp_path)!r}):
            print("held", flush=True)
            sys.stdin.readline()
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        with pytest.raises(lock.WorkdirInUseError, match=f"PID {proc.pid}"):
            with lock.hold(tmp_path):
                pass
    finally:
        proc.communicate("\n", timeout=60)
    assert proc.returncode == 0
    with lock.hold(tmp_path):  # released when the holder finished
        pass
