"""Peak host memory (RSS) of a runner pass over 150 vs 1,500 samples: it should stay flat.

Each size runs in a fresh subprocess (``resource.getrusage(RUSAGE_SELF).ru_maxrss`` measures the
whole process, so sizes must not share one). See ``benchmarks/README.md``.

    python benchmarks/bench_memory.py [--sizes 150 1500] [--batch-size 32]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile


def measure(n: int, batch_size: int, output: str) -> dict:
    """Score ``n`` samples of the full synthetic suite (both probes) and report peak RSS."""
    import torch

    import alignbench

    torch.set_num_threads(1)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    model = alignbench.load_model("meter-tiny-random")
    tasks = alignbench.load_tasks(["align-bench-synth"], options={"size": "full"})
    opts = alignbench.RunOptions(batch_size=batch_size, limit=n, quiet=True, resume=False)
    loaded = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    results = alignbench.evaluate(model, tasks, model_name="bench", output_dir=output, options=opts)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return {"samples": n, "computed": sum(r["run"]["samples_computed"] for r in results),
            "rss_after_imports_mib": before / 1024, "rss_after_load_mib": loaded / 1024, "peak_rss_mib": peak / 1024}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[150, 1500])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        with tempfile.TemporaryDirectory() as out:
            print(json.dumps(measure(args.child, args.batch_size, out)))
        return 0
    rows = []
    for n in args.sizes:
        proc = subprocess.run([sys.executable, __file__, "--child", str(n), "--batch-size", str(args.batch_size)],
                              capture_output=True, text=True, check=True)
        rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    for r in rows:
        print(f"{r['samples']:6d} samples x 2 probes: peak RSS {r['peak_rss_mib']:7.1f} MiB "
              f"(after model and task load {r['rss_after_load_mib']:7.1f} MiB)")
    growth = rows[-1]["peak_rss_mib"] - rows[0]["peak_rss_mib"]
    print(f"growth {rows[0]['samples']} -> {rows[-1]['samples']} samples: {growth:+.1f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
