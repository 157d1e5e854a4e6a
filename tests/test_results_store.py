"""Result files: atomic writes, torn lines, run keys and the output lock."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from alignbench.results import RunLockedError, RunMismatchError, RunStore, read_records, slug

KEY = {"task": "t", "model": "m", "protocol": {"name": "reference"}}


def test_records_survive_and_torn_line_is_dropped(tmp_path):
    with RunStore(tmp_path, "m", "t") as store:
        assert store.start(KEY, resume=True) == {}
        store.append([{"sample_id": "0", "x": 1.0}, {"sample_id": "1", "x": 2.0}])
    with open(tmp_path / "m" / "t.samples.jsonl", "a") as f:
        f.write('{"sample_id": "2", "x"')  # a run killed mid-write
    assert [r["sample_id"] for r in read_records(tmp_path / "m" / "t.samples.jsonl")] == ["0", "1"]
    with RunStore(tmp_path, "m", "t") as store:
        done = store.start(KEY, resume=True)
        assert sorted(done) == ["0", "1"]
        store.append([{"sample_id": "2", "x": 3.0}])
        assert [r["sample_id"] for r in store.records()] == ["0", "1", "2"]


def test_different_run_is_refused_unless_no_resume(tmp_path):
    with RunStore(tmp_path, "m", "t") as store:
        store.start(KEY, resume=True)
        store.append([{"sample_id": "0"}])
    other = {**KEY, "protocol": {"name": "v2"}}
    with RunStore(tmp_path, "m", "t") as store, pytest.raises(RunMismatchError, match="protocol"):
        store.start(other, resume=True)
    with RunStore(tmp_path, "m", "t") as store:
        assert store.start(other, resume=False) == {}
        assert store.records() == []


def test_second_writer_gets_clear_error(tmp_path):
    with RunStore(tmp_path, "m", "t"):
        with pytest.raises(RunLockedError, match="another alignbench run"):
            with RunStore(tmp_path, "m", "t"):
                pass
    with RunStore(tmp_path, "m", "t"):  # released afterwards
        pass


_HOLD_LOCK_AND_FORK = """
import os, sys, time
from alignbench.results import RunStore
store = RunStore(sys.argv[1], "m", "t").__enter__()
child = os.fork()  # as a DataLoader worker is forked
if child == 0:
    time.sleep(60)
    os._exit(0)
print(child, flush=True)
time.sleep(60)
"""


def test_lock_of_a_killed_run_is_free_although_its_forked_worker_lives_on(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", _HOLD_LOCK_AND_FORK, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    child = int(proc.stdout.readline())
    try:
        with pytest.raises(RunLockedError):
            with RunStore(tmp_path, "m", "t"):
                pass
        proc.kill()
        proc.wait()
        os.kill(child, 0)  # the worker still runs
        with RunStore(tmp_path, "m", "t"):  # yet the killed run's lock is gone
            pass
    finally:
        proc.kill()
        os.kill(child, signal.SIGKILL)


def test_result_written_atomically(tmp_path):
    with RunStore(tmp_path, "m", "refcoco+") as store:
        store.write_result({"a": 1})
    assert json.loads((tmp_path / "m" / "refcoco+.json").read_text()) == {"a": 1}
    assert not list((tmp_path / "m").glob("*.tmp"))
    assert slug("org/model name") == "org_model_name"
