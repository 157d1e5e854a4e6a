"""Throughput of the batched runner against a per-sample loop in the style of the original scripts.

Both run in one process on the same model and the same samples, both probes (global-local and
local-local), and print samples/s and their ratio. See ``benchmarks/README.md``.

    python benchmarks/bench_runner.py --setting cpu-tiny
    python benchmarks/bench_runner.py --setting cuda-base      # prints "skipped" without CUDA
"""

from __future__ import annotations

import argparse
import os
import pickle
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

import alignbench
from alignbench.data.sample import GroundingSample
from alignbench.data.synthetic import SyntheticGroundingSource
from alignbench.models.base import MapMethod
from alignbench.scoring.phrases import locate_phrase, merge_words

REFERENCE_MAP = MapMethod("attention", -1, "max")


def _resize_noaa(mask: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """The original per-mask resize: torchvision ``Resize(BICUBIC, antialias=False)`` on the CPU."""
    return F.interpolate(mask[None, None], size=grid, mode="bicubic", align_corners=False)[0, 0]


def _full_res_masks(sample: GroundingSample, regions: list, skip_background: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """The original mask loop: a float box union and a counted pixel mask at image resolution."""
    w, h = sample.size_wh
    box = torch.zeros(h, w)
    pixel = torch.zeros(h, w, dtype=torch.uint8)
    for region in regions:
        x1, y1, x2, y2 = (int(v) for v in region.box)
        if skip_background and (y2 - y1) * (x2 - x1) > 0.9 * w * h:
            continue
        box[y1:y2, x1:x2] = 1.0
        pixel += torch.from_numpy(region.mask.astype(np.uint8))
    return box, pixel.float()


def _share(att: torch.Tensor, mask: torch.Tensor) -> float:
    return float((att * mask).sum() / att.sum())


def per_sample_loop(model: alignbench.AlignmentModel, samples: Callable[[], Iterable[GroundingSample]], device: torch.device) -> int:
    """Both original scripts: batch 1, one image at a time, masks built and resized per phrase
    at full resolution on the CPU, maps copied to the host. Returns the samples scored."""
    transform, grid = model.image_transform(), model.grid_size
    scored = 0
    for probe in ("global", "local"):
        for sample in samples():
            text = model.tokenize([sample.caption])
            with torch.no_grad():
                maps = model.text_image_maps(transform(sample.image)[None].to(device), text, REFERENCE_MAP)[0].cpu()
            if probe == "global":
                regions = [r for p in sample.phrases for r in p.regions]
                box, pixel = _full_res_masks(sample, regions, skip_background=True)
                _share(maps[0], _resize_noaa(box, grid)), _share(maps[0], _resize_noaa(pixel, grid))
            else:
                positions = [t for t in range(text.input_ids.shape[1]) if not text.special[0, t]]
                offsets = [tuple(text.offsets[0, t].tolist()) for t in positions]
                words = merge_words(sample.caption, offsets, positions, (".", ","))
                for phrase in sample.phrases:
                    found = locate_phrase(words, phrase.text)
                    att = maps[list(found or [0])].sum(0)
                    box, pixel = _full_res_masks(sample, list(phrase.regions), skip_background=False)
                    _share(att, _resize_noaa(box, grid)), _share(att, _resize_noaa(pixel, grid))
            scored += 1
    return scored


def _count_or_auto(value: str) -> int | str:
    return value if value == "auto" else int(value)


def run_runner(model, tasks: list, device: str, limit: int, args: argparse.Namespace, out: Path) -> tuple[int, float, int]:
    """The runner on ``tasks``; returns (samples scored, forward share of its wall time, workers used)."""
    opts = alignbench.RunOptions(device=device, batch_size=args.batch_size, num_workers=args.num_workers, precision=args.precision,
                                 limit=limit, quiet=True, resume=False)
    results = alignbench.evaluate(model, tasks, model_name="bench", output_dir=out, options=opts)
    n = sum(r["run"]["samples_computed"] for r in results)
    forward = sum(r["run"]["forward_share"] * r["run"]["wall_time_s"] for r in results)
    return n, forward / sum(r["run"]["wall_time_s"] for r in results), results[0]["run"]["num_workers_used"]


def write_release_layout(source: SyntheticGroundingSource, n: int, root: Path) -> None:
    """``images/<i>.jpg`` + ``pkls/<i>.pkl`` of the first ``n`` synthetic scenes (original layout)."""
    (root / "images").mkdir(parents=True)
    (root / "pkls").mkdir()
    for i in range(n):
        s = source[i]
        s.image.save(root / "images" / f"{i}.jpg", quality=95)
        annotation = {p.text: [{"bbox_mask": list(r.box), "pixel_mask": r.mask} for r in p.regions] for p in s.phrases}
        with open(root / "pkls" / f"{i}.pkl", "wb") as f:
            pickle.dump({"caption": s.caption, "annotation": annotation}, f, protocol=4)


def setting(name: str, n: int, work: Path) -> tuple[alignbench.AlignmentModel, list, str]:
    """(model, tasks, device) of a benchmark setting."""
    if name == "cpu-tiny":
        model = alignbench.load_model("meter-tiny-random")
        tasks = alignbench.load_tasks(["align-bench-synth"], options={"size": "mini" if n <= 200 else "full"})
        return model, tasks, "cpu"
    data = work / "align-bench-synth-release"
    write_release_layout(SyntheticGroundingSource(size="full"), n, data)
    # Base-size GLSCL architecture with random weights; RoBERTa-base vocabulary size so the
    # embedding is full size, fed by the bundled tiny BPE (its ids are all in range).
    model = alignbench.load_model("meter-tiny-random", model_config={"preset": "base", "vocab_size": 50265}, image_size=288, device="cuda")
    tasks = alignbench.load_tasks(["align-bench"], data_dir=str(data))
    return model, tasks, "cuda"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--setting", choices=["cpu-tiny", "cuda-base"], default="cpu-tiny")
    parser.add_argument("--samples", type=int, help="samples per probe (default: 1000 cpu-tiny, 1500 cuda-base)")
    parser.add_argument("--batch-size", type=_count_or_auto, default="auto", help="runner batch size or 'auto'")
    parser.add_argument("--num-workers", type=_count_or_auto, default="auto", help="runner DataLoader workers or 'auto' (as alignbench eval)")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"])
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's)")
    args = parser.parse_args(argv)
    if args.setting == "cuda-base" and not torch.cuda.is_available():
        print("cuda-base: skipped: no CUDA device")
        return 0
    if args.threads:
        torch.set_num_threads(args.threads)
    n = args.samples or (1000 if args.setting == "cpu-tiny" else 1500)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        model, tasks, device = setting(args.setting, n, work)
        source = tasks[0].source
        n = min(n, len(source))

        t0 = time.perf_counter()
        n_loop = per_sample_loop(model, lambda: (source[i] for i in range(n)), torch.device(device))
        loop_s = time.perf_counter() - t0

        os.environ["ALIGNBENCH_CACHE"] = str(work / "cache")  # starts cold
        rows = []
        for label in ("runner, cold mask cache", "runner, warm mask cache"):
            t0 = time.perf_counter()
            n_run, forward_share, workers = run_runner(model, tasks, device, n, args, work / "out")
            rows.append((label, n_run, time.perf_counter() - t0, forward_share))

    print(f"setting {args.setting}: {n} samples x 2 probes, device {device}, torch threads {torch.get_num_threads()}, "
          f"precision {args.precision}, batch size {args.batch_size}, workers {args.num_workers} ({workers} used)")
    loop_rate = n_loop / loop_s
    print(f"{'per-sample loop (original style)':28s} {loop_rate:8.1f} samples/s  ({loop_s:.1f} s)")
    for label, n_run, seconds, share in rows:
        rate = n_run / seconds
        print(f"{label:28s} {rate:8.1f} samples/s  ({seconds:.1f} s, forward {share:.0%} of runner wall)  x{rate / loop_rate:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
