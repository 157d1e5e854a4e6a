"""Gradient relevancy through a ViT's attention layers (Chefer et al., ICCV 2021).

"Generic Attention-model Explainability for Interpreting Bi-Modal and Encoder-Decoder
Transformers": starting from the identity ``R = I`` over the ``1 + N`` visual tokens, every
attention layer ``A`` (in forward order) updates ``R <- R + mean_heads(clamp(dA * A, 0)) @ R``,
where ``dA`` is the gradient of the explained score (here the image-text cosine similarity)
with respect to the attention probabilities. The relevance of the patches is the class-token
row ``R[0, 1:]``. Non-negative by construction.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from open_clip.transformer import ResidualAttentionBlock


def _attention_recording(block: ResidualAttentionBlock, store: list[torch.Tensor]):
    """A drop-in for ``block.attention`` that computes self-attention explicitly and appends its
    probabilities ``[B, H, N, N]`` (part of the autograd graph) to ``store``."""
    mha = block.attn

    def attention(q_x: torch.Tensor, k_x=None, v_x=None, attn_mask=None) -> torch.Tensor:
        if k_x is not None or v_x is not None:
            raise NotImplementedError("relevancy supports self-attention blocks only")
        B, N, D = q_x.shape
        H = mha.num_heads
        q, k, v = F.linear(q_x, mha.in_proj_weight, mha.in_proj_bias).view(B, N, 3, H, D // H).permute(2, 0, 3, 1, 4)
        scores = q @ k.transpose(-1, -2) / math.sqrt(D // H)
        if attn_mask is not None:
            scores = scores + attn_mask.to(scores.dtype)
        probs = scores.softmax(dim=-1)
        store.append(probs)
        return mha.out_proj((probs @ v).transpose(1, 2).reshape(B, N, D))

    return attention


@contextmanager
def recording_attention(blocks: list[ResidualAttentionBlock]) -> Iterator[list[torch.Tensor]]:
    """Within the block, forward passes through ``blocks`` record attention probabilities."""
    for block in blocks:
        if not isinstance(block, ResidualAttentionBlock) or not block.attn.batch_first or block.attn.in_proj_weight is None:
            raise NotImplementedError(f"relevancy needs open_clip ResidualAttentionBlocks with a packed, batch-first attention, not {type(block).__name__}")
    store: list[torch.Tensor] = []
    for block in blocks:
        block.attention = _attention_recording(block, store)
    try:
        yield store
    finally:
        for block in blocks:
            del block.attention


def relevancy_step(score: torch.Tensor, probs: list[torch.Tensor]) -> torch.Tensor:
    """Patch relevance ``[B, N - 1]`` of ``score`` (a scalar summing one term per image) from the
    recorded attention ``probs``; the graph is kept for further steps."""
    grads = torch.autograd.grad(score, probs, retain_graph=True)
    B, _, N, _ = probs[0].shape
    R = torch.eye(N, dtype=probs[0].dtype, device=probs[0].device).expand(B, N, N)
    for a, g in zip(probs, grads):
        cam = (g * a).clamp(min=0).mean(dim=1)
        R = R + cam @ R
    return R[:, 0, 1:].detach()
