"""Training a small METER-layout model with the METER or GLSCL objectives on the synthetic world.

Recipes: ``meter`` = ITC + ITM (hard negatives) + MLM; ``glscl`` = ``meter`` + MGSC + MLTC
(weight 0.2). One masked caption per step serves MLM and the text side of MGSC and MLTC.
Training is deterministic given the seed and the number of CPU threads.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from ..models.base import TextBatch
from ..models.factory import load_model
from ..models.meter import MeterAdapter, MeterModel
from ..progress import progress_bar
from . import objectives as obj
from .data import SyntheticTrainSet

RECIPES = ("meter", "glscl")


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of one training run; saved inside the checkpoint."""

    recipe: str = "glscl"
    base_model: str = "meter-tiny-random"
    steps: int = 800
    batch_size: int = 32
    lr: float = 5e-4
    weight_decay: float = 0.01
    warmup_steps: int = 100
    seed: int = 0
    data_size: str = "full"
    mlm_prob: float = 0.15
    mgsc_image_drop: float = 0.8
    mltc_image_mask: float = 0.3
    mltc_weight: float = 0.2
    completion_temperature: float = 0.07
    log_every: int = 50

    def __post_init__(self) -> None:
        if self.recipe not in RECIPES:
            raise ValueError(f"recipe must be one of {RECIPES}, got {self.recipe!r}")


def _lr_factor(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up then cosine decay to zero."""
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    return 0.5 * (1 + math.cos(math.pi * progress))


def _mask_text(text: TextBatch, prob: float, mask_id: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Masked ids and MLM labels: each caption token (never specials/padding) is replaced by
    ``<mask>`` with probability ``prob``; at least one token per caption."""
    candidates = ~text.special
    chosen = (torch.rand(text.input_ids.shape, generator=gen) < prob) & candidates
    first = candidates.float().argmax(dim=1)
    none = ~chosen.any(dim=1)
    chosen[none, first[none]] = True
    return text.input_ids.masked_fill(chosen, mask_id), text.input_ids.masked_fill(~chosen, -100)


def _random_patches(batch: int, n: int, count: int, gen: torch.Generator) -> torch.Tensor:
    """``count`` distinct random patch indices per sample, ``[batch, count]``."""
    return torch.rand(batch, n, generator=gen).argsort(dim=1)[:, :count]


class Trainer:
    """One training run: model, data, optimiser and the per-step losses."""

    def __init__(self, cfg: TrainConfig) -> None:
        self.cfg = cfg
        self.adapter: MeterAdapter = load_model(cfg.base_model)
        self.model: MeterModel = self.adapter.model
        self.data = SyntheticTrainSet(self.adapter, size=cfg.data_size)
        self.gen = torch.Generator().manual_seed(cfg.seed)
        decay = [p for n, p in self.model.named_parameters() if p.ndim >= 2]
        no_decay = [p for n, p in self.model.named_parameters() if p.ndim < 2]
        self.optim = torch.optim.AdamW(
            [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr
        )
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.optim, lambda s: _lr_factor(s, cfg))

    def losses(self, pixel_values: torch.Tensor, text: TextBatch) -> dict[str, torch.Tensor]:
        """All objectives of the recipe for one batch."""
        m, cfg, gen = self.model, self.cfg, self.gen
        ids, mask = text.input_ids, text.attention_mask
        text_out = m.encode_text(ids, mask)
        image_out = m.encode_image(pixel_values)
        t_emb = m.language_proj(m.cross_modal_text_transform(text_out[:, 0]))
        i_emb = m.vision_proj(m.cross_modal_image_transform(image_out[:, 0]))
        out = {"itc": obj.info_nce(i_emb, t_emb, m.cl_temp)}

        x, y, _ = m.fuse(text_out, mask, image_out)
        sim = torch.nn.functional.normalize(i_emb, dim=-1) @ torch.nn.functional.normalize(t_emb, dim=-1).t()
        neg_text, neg_image = obj.hardest_negatives(sim), obj.hardest_negatives(sim.t())
        xn, yn, _ = m.fuse(torch.cat([text_out[neg_text], text_out]), torch.cat([mask[neg_text], mask]), torch.cat([image_out, image_out[neg_image]]))
        itm = lambda a, b: m.itm_score(torch.cat([m.cross_modal_text_pooler(a), m.cross_modal_image_pooler(b)], -1))  # noqa: E731
        out["itm"] = obj.itm_loss(itm(x, y), itm(xn, yn))

        masked_ids, labels = _mask_text(text, cfg.mlm_prob, self.adapter.tokenizer.mask_token_id, gen)
        xm, ym, _ = m.fuse(m.encode_text(masked_ids, mask), mask, image_out)
        out["mlm"] = obj.mlm_loss(m.mlm_score(xm), labels)
        if cfg.recipe == "glscl":
            out["mgsc"] = self._mgsc(pixel_values, text_out, mask, x, y, xm)
            out["mltc"] = cfg.mltc_weight * self._mltc(pixel_values, text_out, mask, x, y, xm, labels != -100)
        return out

    def _mgsc(self, pixel_values, text_out, mask, x, y, xm) -> torch.Tensor:
        """Global completion: masked caption's fused [CLS] vs the complete one; image with most
        patches dropped vs the complete image."""
        m, t = self.model, self.cfg.completion_temperature
        n = m.config.grid_size**2
        keep = _random_patches(len(pixel_values), n, max(1, round(n * (1 - self.cfg.mgsc_image_drop))), self.gen)
        _, yd, _ = m.fuse(text_out, mask, m.encode_image(pixel_values, keep=keep))
        text_side = obj.completion_loss(m.cross_modal_text_pooler(xm), m.cross_modal_text_pooler(x), t)
        image_side = obj.completion_loss(m.cross_modal_image_pooler(yd), m.cross_modal_image_pooler(y), t)
        return (text_side + image_side) / 2

    def _mltc(self, pixel_values, text_out, mask, x, y, xm, masked_tokens) -> torch.Tensor:
        """Local completion: fused tokens at masked positions vs the complete input's tokens."""
        m, t = self.model, self.cfg.completion_temperature
        n = m.config.grid_size**2
        patch_mask = torch.rand(len(pixel_values), n, generator=self.gen) < self.cfg.mltc_image_mask
        _, yp, _ = m.fuse(text_out, mask, m.encode_image(pixel_values, patch_mask=patch_mask))
        text_side = obj.token_completion_loss(xm, x, masked_tokens, t)
        image_side = obj.token_completion_loss(yp[:, 1:], y[:, 1:], patch_mask, t)
        return (text_side + image_side) / 2

    def train(self, log_path: Path | None = None, quiet: bool = False) -> list[dict[str, Any]]:
        """Run all steps; returns (and appends to ``log_path``) the logged losses."""
        cfg, log = self.cfg, []
        torch.manual_seed(cfg.seed)  # dropout draws from the global generator
        self.model.train()
        started = time.time()
        with progress_bar(cfg.steps, desc=f"train {cfg.recipe} seed {cfg.seed}", quiet=quiet) as bar:
            for step in range(cfg.steps):
                idx = torch.randint(len(self.data), (cfg.batch_size,), generator=self.gen)
                text = self.adapter.tokenize([self.data.captions[i] for i in idx.tolist()])
                losses = self.losses(self.data.pixel_values[idx], text)
                total = sum(losses.values())
                self.optim.zero_grad(set_to_none=True)
                total.backward()
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), 5.0)
                self.optim.step()
                self.sched.step()
                bar.update(1)
                if step % cfg.log_every == 0 or step == cfg.steps - 1:
                    entry = {"step": step, "total": total.item(), **{k: v.item() for k, v in losses.items()}, "elapsed_s": round(time.time() - started, 1)}
                    log.append(entry)
                    if log_path is not None:
                        with open(log_path, "a") as f:
                            f.write(json.dumps(entry) + "\n")
        self.model.eval()
        return log

    def save(self, path: Path, log: list[dict[str, Any]]) -> None:
        """Write the weights in the published METER key layout.

        ``.safetensors``: the state dict, with the reference config and the training record as
        JSON metadata (``config``, ``alignbench_train``). Any other suffix: a Lightning-style
        checkpoint with the config under ``hyper_parameters.config``.
        """
        path.parent.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().clone().contiguous() for k, v in self.model.state_dict().items()}
        record = {**asdict(self.cfg), "data_fingerprint": self.data.fingerprint, "torch_threads": torch.get_num_threads(),
                  "final_losses": log[-1] if log else {}}
        config = self.model.config.to_dict()
        if path.suffix == ".safetensors":
            from safetensors.torch import save_file

            save_file(state, str(path), metadata={"config": json.dumps(config), "alignbench_train": json.dumps(record)})
        else:
            torch.save({"state_dict": state, "hyper_parameters": {"config": config}, "alignbench_train": record}, path)


def train(cfg: TrainConfig, output: Path, quiet: bool = False) -> Path:
    """Train with ``cfg`` and write ``output`` (checkpoint) and ``output.with_suffix('.log.jsonl')``."""
    output = Path(output)
    log_path = output.with_suffix(".log.jsonl")
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log_path.unlink(missing_ok=True)
    trainer = Trainer(cfg)
    log = trainer.train(log_path, quiet=quiet)
    trainer.save(output, log)
    return output
