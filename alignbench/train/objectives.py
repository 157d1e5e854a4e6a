"""Pre-training objectives of METER / GLSCL, as pure functions of model outputs.

* ``info_nce``: symmetric InfoNCE between two sets of paired vectors (row i of ``a`` is the
  positive of row i of ``b``; every other row is a negative).
* ITC (image-text contrastive), ITM (image-text matching with hard negatives mined from the
  ITC similarities), MLM (masked language modelling).
* MGSC (masked global semantic completion): the fused global feature of a masked input is
  pulled towards the fused global feature of the same sample computed from the complete
  input (a stop-gradient target), against the other samples of the batch.
* MLTC (masked local token completion): the fused local tokens at masked positions are pulled
  towards the fused tokens at the same positions computed from the complete input
  (stop-gradient target), against every other masked position of the batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def info_nce(a: torch.Tensor, b: torch.Tensor, temperature: float | torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE over ``[N, D]`` pairs (cosine similarity / temperature)."""
    logits = F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).t() / temperature
    target = torch.arange(a.shape[0], device=a.device)
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target)) / 2


def completion_loss(masked: torch.Tensor, complete: torch.Tensor, temperature: float) -> torch.Tensor:
    """MGSC / MLTC: InfoNCE of masked-input features against the complete-input features of
    the same samples or positions, which act as fixed targets (no gradient flows into them)."""
    return info_nce(masked, complete.detach(), temperature)


def token_completion_loss(masked: torch.Tensor, complete: torch.Tensor, positions: torch.Tensor, temperature: float) -> torch.Tensor:
    """MLTC: :func:`completion_loss` of the fused tokens ``[B, N, D]`` of the masked input at
    the masked ``positions`` (``[B, N]`` bool) against the complete input's tokens there; the
    other positions do not count."""
    return completion_loss(masked[positions], complete[positions], temperature)


def hardest_negatives(similarity: torch.Tensor) -> torch.Tensor:
    """For each row, the column of highest similarity other than its own (``[N]``)."""
    sim = similarity.detach().clone()
    sim.fill_diagonal_(float("-inf"))
    return sim.argmax(dim=1)


def itm_loss(logits_pos: torch.Tensor, logits_neg: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the matching head: positives are class 1, negatives class 0."""
    logits = torch.cat([logits_pos, logits_neg])
    labels = torch.cat([torch.ones(len(logits_pos)), torch.zeros(len(logits_neg))]).long().to(logits.device)
    return F.cross_entropy(logits, labels)


def mlm_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy over masked positions (``labels`` is -100 elsewhere)."""
    return F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=-100)
