"""Task definitions and bundled assets ship inside the built wheel, not only in the source tree."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_wheel_carries_task_definitions_and_lists_them(tmp_path):
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path / "dist"), str(REPO)],
        capture_output=True, text=True, timeout=600,
    )
    assert build.returncode == 0, build.stderr
    (wheel,) = (tmp_path / "dist").glob("alignbench-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "alignbench/_task_defs/align-bench-global.yaml" in names
    assert "alignbench/assets/tiny-bpe/vocab.json" in names
    assert "alignbench/model_configs/meter-tiny-random.json" in names
    assert {"alignbench/assets/checkpoints/glscl-tiny.safetensors", "alignbench/assets/checkpoints/meter-tiny.safetensors"} <= set(names)

    site = tmp_path / "site"
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
        capture_output=True, text=True, timeout=600,
    )
    assert install.returncode == 0, install.stderr
    env = {**os.environ, "PYTHONPATH": str(site)}
    listing = subprocess.run(
        [sys.executable, "-c", "import alignbench, json; alignbench.load_model('meter-tiny'); print(alignbench.__file__); "
                               "print(json.dumps([r['name'] for r in alignbench.list_tasks()]))"],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300,
    )
    assert listing.returncode == 0, listing.stderr
    location, names_json = listing.stdout.strip().splitlines()[-2:]
    assert location.startswith(str(site))  # the installed wheel, not the source tree
    assert "align-bench-global" in names_json and "align-bench-synth-local" in names_json
