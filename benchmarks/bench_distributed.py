"""Speed of 1 vs N evaluation processes under torchrun (gloo on CPU, NCCL with --device cuda).

Both sides run ``alignbench eval`` as a fresh subprocess on the same model, tasks and samples
(one intra-op thread per process on CPU), into fresh output folders; the script checks that the
scores agree and prints samples/s for each and the ratio. See ``benchmarks/README.md``.

    python benchmarks/bench_distributed.py [--nproc 2] [--task align-bench-synth] [--limit 1000] [--task-option KEY=VALUE] [--num-workers 0|N|auto]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run(nproc: int, args: argparse.Namespace, output: Path) -> tuple[float, dict[str, dict]]:
    """Wall seconds of one ``alignbench eval`` (process start to exit) and its results by task."""
    launcher = [sys.executable, "-m", "alignbench"] if nproc == 1 else [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(nproc), "-m", "alignbench"]
    tasks = [a for t in args.task for a in ("--task", t)] + [a for o in args.task_option for a in ("--task-option", o)]
    cmd = [*launcher, "eval", "--model", args.model, *tasks, "--limit", str(args.limit), "--batch-size", str(args.batch_size),
           "--num-workers", args.num_workers, "--device", args.device, "--output", str(output), "--no-resume", "--quiet"]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    started = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - started
    results = {}
    for path in (output / args.model).glob("*.json"):
        if not path.name.endswith(".run.json"):
            result = json.loads(path.read_text())
            results[result["task"]] = result
    return wall, results


def eval_seconds(results: dict[str, dict]) -> float:
    """Wall seconds of the longest evaluation pass (the two grounding probes share one pass;
    each result reports that pass's wall time)."""
    return max(r["run"]["wall_time_s"] for r in results.values())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nproc", type=int, default=2)
    parser.add_argument("--model", default="meter-tiny-random")
    parser.add_argument("--task", action="append", default=None, help="repeatable (default: align-bench-synth)")
    parser.add_argument("--task-option", action="append", default=None,
                        help="repeatable KEY=VALUE (default: size=full for the synthetic suite)")
    parser.add_argument("--limit", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--num-workers", default="0",
                        help="DataLoader workers of each process (default 0: the processes alone share the work; 'auto': as alignbench eval)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS per process")
    args = parser.parse_args(argv)
    args.task = args.task or ["align-bench-synth"]
    if args.task_option is None:
        args.task_option = ["size=full"] if all(t.startswith("align-bench-synth") for t in args.task) else []
    with tempfile.TemporaryDirectory() as tmp:
        rows = {n: run(n, args, Path(tmp) / f"n{n}") for n in (1, args.nproc)}
    (wall_1, res_1), (wall_n, res_n) = rows[1], rows[args.nproc]
    same = all(res_1[t]["metrics"] == res_n[t]["metrics"] for t in res_1)
    samples = sum(r["n_samples"] for r in res_1.values())
    print(f"{args.model} on {', '.join(sorted(res_1))}: {samples} samples, batch {args.batch_size}, device {args.device}, "
          f"{args.threads} thread(s) and {args.num_workers} worker(s) per process")
    for n, (wall, res) in rows.items():
        print(f"{n} process(es): {samples / wall:7.1f} samples/s end to end ({wall:6.1f} s incl. start-up), "
              f"longest evaluation pass {eval_seconds(res):6.1f} s")
    print(f"speed-up {args.nproc} vs 1 process: x{wall_1 / wall_n:.2f} end to end, x{eval_seconds(res_1) / eval_seconds(res_n):.2f} "
          f"in the longest evaluation pass; scores identical: {same}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
