"""Batched, on-device map scores: relevance mass share and the pointing game."""

from __future__ import annotations

import torch


def mass_share(maps: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """``sum(M * K) / sum(M)`` per map: the share of attention mass on the region, ``[N]``."""
    return (maps * masks).sum(dim=(-2, -1)) / maps.sum(dim=(-2, -1))


def pointing_hit(maps: torch.Tensor, hits: torch.Tensor) -> torch.Tensor:
    """Whether each map's argmax cell (first on ties) lies in its region, ``[N]`` float 0/1."""
    idx = maps.flatten(1).argmax(dim=1, keepdim=True)
    return hits.flatten(1).gather(1, idx).squeeze(1).float()


def phrase_maps(maps: torch.Tensor, sample_index: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Sum of token maps per phrase: ``maps [B, L, h, w]``, ``weights [P, L]`` -> ``[P, h, w]``."""
    return torch.einsum("pl,plhw->phw", weights, maps[sample_index])
