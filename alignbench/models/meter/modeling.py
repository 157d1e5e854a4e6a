"""The METER / SCL / GLSCL network ("METER layout") in plain PyTorch.

Module and parameter names mirror the reference ``SCLTransformer`` so that its checkpoints load
without renaming: a RoBERTa text tower (``text_transformer``, from transformers), a CLIP visual
tower with the MAE decoder parameters (``vision_transformer``), and a stack of co-attention
layer pairs (``cross_modal_{text,image}_layers``, BERT post-LN layers: self-attention ->
cross-attention -> FFN) with poolers, ITM, MLM and contrastive heads.

Unlike the reference (whose batches were unpadded at evaluation), padding is masked
everywhere it can be attended to, so every output is independent of the batch composition.

Flexible video mode (the reference's ``clip_model_video``): a batch of clips ``[B, T, 3, H, W]``
runs through the same visual tower with a learnable temporal embedding (``temporal_embed``,
``[1, temporal_frames, W]`` as in the reference checkpoints; zero when the model has none) added to
each frame's position embedding, and an attention mask under which every frame's [CLS] token
attends to all tokens of all frames while patch tokens attend within their own frame. The
visual sequence is the T [CLS] features followed by every frame's patches (frame-major); the
image pooler and the contrastive image embedding average the T [CLS] features. With T = 1 and
no (or a zero) temporal embedding this is the image path exactly.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import RobertaConfig, RobertaModel

from .config import MeterConfig

CROSS_LAYER_NORM_EPS = 1e-12  # BertConfig default, used by the reference cross-modal layers
POS_EMBED_KEY = "vision_transformer.visual.positional_embedding"
DECODER_POS_EMBED_KEY = "vision_transformer.decoder_pos_embed"
TEMPORAL_EMBED_KEY = "vision_transformer.visual.temporal_embed"


def extended_mask(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``[B, L]`` 1/0 key mask -> additive ``[B, 1, 1, L]`` mask (0 or the dtype's minimum)."""
    return (1.0 - mask[:, None, None, :].to(dtype)) * torch.finfo(dtype).min


# --------------------------------------------------------------------------- CLIP visual tower


class LayerNormFp32(nn.LayerNorm):
    """LayerNorm computed in float32 and cast back (CLIP's fp16-safe LayerNorm)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.float()).to(x.dtype)


class QuickGELU(nn.Module):
    """``x * sigmoid(1.702 x)``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


class ResidualAttentionBlock(nn.Module):
    """Pre-LN transformer block of CLIP."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.ln_1 = LayerNormFp32(width)
        self.mlp = nn.Sequential(
            OrderedDict([("c_fc", nn.Linear(width, width * 4)), ("gelu", QuickGELU()), ("c_proj", nn.Linear(width * 4, width))])
        )
        self.ln_2 = LayerNormFp32(width)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        """``attn_mask``: boolean ``[S, S]``, True where a query may NOT attend to a key."""
        h = self.ln_1(x)
        x = x + self.attn(h, h, h, need_weights=False, attn_mask=attn_mask)[0]
        return x + self.mlp(self.ln_2(x))


class VisualTransformerStack(nn.Module):
    """Container of the ``resblocks`` (``vision_layers - 1`` of them, as published)."""

    def __init__(self, width: int, blocks: int, heads: int) -> None:
        super().__init__()
        self.resblocks = nn.ModuleList(ResidualAttentionBlock(width, heads) for _ in range(blocks))

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        for block in self.resblocks:
            x = block(x, attn_mask)
        return x


def frame_attention_mask(frames: int, tokens_per_frame: int, device: torch.device | None = None) -> torch.Tensor:
    """The flexible video mode's boolean ``[S, S]`` attention mask (True: may NOT attend),
    ``S = frames * tokens_per_frame``, frames in order, each frame's [CLS] first: a [CLS] token
    attends to every token of every frame, a patch token to the tokens of its own frame."""
    index = torch.arange(frames * tokens_per_frame, device=device)
    frame, is_cls = index // tokens_per_frame, index % tokens_per_frame == 0
    return ~(is_cls[:, None] | (frame[:, None] == frame[None, :]))


class VisualTransformer(nn.Module):
    """CLIP ViT without the output projection: patches + CLS -> ``ln_post`` features."""

    def __init__(self, config: MeterConfig) -> None:
        super().__init__()
        width, patch = config.vision_width, config.patch_size
        scale = width**-0.5
        self.conv1 = nn.Conv2d(3, width, kernel_size=patch, stride=patch, bias=False)
        self.class_embedding = nn.Parameter(scale * torch.randn(width))
        self.visual_mask_token = nn.Parameter(torch.randn(1, width))  # MLTC training only
        self.positional_embedding = nn.Parameter(scale * torch.randn(config.grid_size**2 + 1, width))
        self.ln_pre = LayerNormFp32(width)
        self.transformer = VisualTransformerStack(width, config.vision_resblocks, config.vision_heads)
        self.ln_post = LayerNormFp32(width)
        # video mode only; zeros until a video checkpoint is loaded (image checkpoints lack it)
        self.temporal_embed = nn.Parameter(torch.zeros(1, config.temporal_frames, width)) if config.temporal_frames else None

    def forward(
        self, pixel_values: torch.Tensor, patch_mask: torch.Tensor | None = None, keep: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Features ``[B, 1 + n, W]`` of images ``[B, 3, H, W]``, or ``[B, T + T*n, W]`` of clips
        ``[B, T, 3, H, W]`` (see :meth:`forward_clips`). Training-time masking (images only,
        both default off): ``patch_mask [B, g*g]`` (bool) replaces those patches by
        ``visual_mask_token``; ``keep [B, K]`` (patch indices) drops all other patches after
        position embedding."""
        if pixel_values.dim() == 5:
            if patch_mask is not None or keep is not None:
                raise ValueError("training-time patch masking takes images [B, 3, H, W], not clips")
            return self.forward_clips(pixel_values)
        x = self.conv1(pixel_values).flatten(2).transpose(1, 2)  # [B, g*g, W], row-major patches
        if patch_mask is not None:
            x = torch.where(patch_mask[..., None], self.visual_mask_token.to(x.dtype), x)
        cls = self.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], dim=1) + self.positional_embedding.to(x.dtype)
        if keep is not None:
            x = torch.cat([x[:, :1], x[:, 1:].gather(1, keep[..., None].expand(-1, -1, x.shape[-1]))], dim=1)
        return self.ln_post(self.transformer(self.ln_pre(x)))

    def forward_clips(self, clips: torch.Tensor) -> torch.Tensor:
        """Flexible video mode: clips ``[B, T, 3, H, W]`` -> ``[B, T + T*n, W]``, the frames'
        [CLS] features then every frame's patch features (frame-major, row-major patches)."""
        B, T = clips.shape[:2]
        pos = self.positional_embedding.expand(T, -1, -1)  # [T, 1 + n, W]
        if self.temporal_embed is not None:
            if T > self.temporal_embed.shape[1]:
                raise ValueError(f"a clip of {T} frames exceeds the {self.temporal_embed.shape[1]} frames of the temporal embedding (temporal_frames)")
            pos = pos + self.temporal_embed[0, :T, None]
        x = self.conv1(clips.flatten(0, 1)).flatten(2).transpose(1, 2)  # [B*T, n, W]
        cls = self.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], dim=1).unflatten(0, (B, T)) + pos.to(x.dtype)
        tokens = x.shape[2]
        mask = frame_attention_mask(T, tokens, x.device) if T > 1 else None
        x = self.ln_post(self.transformer(self.ln_pre(x.flatten(1, 2)), mask)).unflatten(1, (T, tokens))
        return torch.cat([x[:, :, 0], x[:, :, 1:].flatten(1, 2)], dim=1)


class DecoderAttention(nn.Module):
    """MAE decoder attention parameters (``qkv``, ``proj``)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)


class DecoderMlp(nn.Module):
    """MAE decoder MLP parameters (``fc1``, ``fc2``)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)


class DecoderBlock(nn.Module):
    """MAE decoder block; parameters only (pre-training, never run here)."""

    def __init__(self, dim: int, mlp_ratio: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = DecoderAttention(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = DecoderMlp(dim, int(dim * mlp_ratio))


class VisionTower(nn.Module):
    """``vision_transformer``: the CLIP visual encoder plus the MAE decoder parameters."""

    def __init__(self, config: MeterConfig) -> None:
        super().__init__()
        dim = config.decoder_embed_dim
        self.visual = VisualTransformer(config)
        self.decoder_embed = nn.Linear(config.vision_width, dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.decoder_pos_embed = nn.Parameter(torch.zeros(1, config.grid_size**2 + 1, dim), requires_grad=False)
        self.decoder_blocks = nn.ModuleList(DecoderBlock(dim, config.decoder_mlp_ratio) for _ in range(config.decoder_depth))
        self.decoder_norm = nn.LayerNorm(dim)
        self.decoder_pred = nn.Linear(dim, config.patch_size**2 * 3)

    def forward(self, pixel_values: torch.Tensor, **masking: torch.Tensor | None) -> torch.Tensor:
        return self.visual(pixel_values, **masking)


# --------------------------------------------------------------------------- co-attention layers


class SelfAttentionProjections(nn.Module):
    """Multi-head scaled dot-product attention with BERT's ``query``/``key``/``value`` names."""

    def __init__(self, hidden: int, heads: int) -> None:
        super().__init__()
        self.heads, self.head_dim = heads, hidden // heads
        self.query = nn.Linear(hidden, hidden)
        self.key = nn.Linear(hidden, hidden)
        self.value = nn.Linear(hidden, hidden)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        return x.view(x.shape[0], x.shape[1], self.heads, self.head_dim).transpose(1, 2)

    def forward(
        self, hidden: torch.Tensor, context: torch.Tensor, context_mask: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Attend from ``hidden`` to ``context``; returns ``(context layer, probs [B, h, Lq, Lk])``."""
        q, k, v = self._split(self.query(hidden)), self._split(self.key(context)), self._split(self.value(context))
        scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(self.head_dim)
        if context_mask is not None:
            scores = scores + context_mask
        probs = scores.softmax(dim=-1)
        out = torch.matmul(probs, v).transpose(1, 2).reshape(hidden.shape)
        return out, probs


class AddNorm(nn.Module):
    """``LayerNorm(dense(x) + residual)`` (BERT ``*Output``)."""

    def __init__(self, in_dim: int, hidden: int) -> None:
        super().__init__()
        self.dense = nn.Linear(in_dim, hidden)
        self.LayerNorm = nn.LayerNorm(hidden, eps=CROSS_LAYER_NORM_EPS)

    def forward(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dense(x) + residual)


class AttentionBlock(nn.Module):
    """BERT ``Attention``: attention (``self``) then add & norm (``output``)."""

    def __init__(self, hidden: int, heads: int) -> None:
        super().__init__()
        self.self = SelfAttentionProjections(hidden, heads)
        self.output = AddNorm(hidden, hidden)

    def forward(
        self, hidden: torch.Tensor, context: torch.Tensor, context_mask: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        out, probs = self.self(hidden, context, context_mask)
        return self.output(out, hidden), probs


class Intermediate(nn.Module):
    """FFN expansion with exact (erf) GELU."""

    def __init__(self, hidden: int, intermediate: int) -> None:
        super().__init__()
        self.dense = nn.Linear(hidden, intermediate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(self.dense(x))


class BertCrossLayer(nn.Module):
    """Co-attention layer: self-attention -> cross-attention -> FFN, each post-LN (eps 1e-12)."""

    def __init__(self, hidden: int, heads: int, intermediate: int) -> None:
        super().__init__()
        self.attention = AttentionBlock(hidden, heads)
        self.crossattention = AttentionBlock(hidden, heads)
        self.intermediate = Intermediate(hidden, intermediate)
        self.output = AddNorm(intermediate, hidden)

    def forward(
        self,
        hidden: torch.Tensor,
        other: torch.Tensor,
        mask: torch.Tensor | None,
        other_mask: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns ``(layer output, cross-attention probs [B, heads, L, L_other])``."""
        attended, _ = self.attention(hidden, hidden, mask)
        crossed, cross_probs = self.crossattention(attended, other, other_mask)
        return self.output(self.intermediate(crossed), crossed), cross_probs


# --------------------------------------------------------------------------- heads


class Pooler(nn.Module):
    """``tanh(dense(x[:, 0]))``; with ``n_first > 1`` (the [CLS] tokens of a clip's frames) the
    mean of the first ``n_first`` tokens replaces ``x[:, 0]``."""

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.dense = nn.Linear(hidden, hidden)

    def forward(self, x: torch.Tensor, n_first: int = 1) -> torch.Tensor:
        first = x[:, 0] if n_first == 1 else x[:, :n_first].mean(dim=1)
        return torch.tanh(self.dense(first))


class ITMHead(nn.Module):
    """Image-text matching logits ``[no match, match]`` from the pooled pair."""

    def __init__(self, in_dim: int) -> None:
        super().__init__()
        self.fc = nn.Linear(in_dim, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x)


class MLMTransform(nn.Module):
    """MLM head transform parameters (``dense``, ``LayerNorm``)."""

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.dense = nn.Linear(hidden, hidden)
        self.LayerNorm = nn.LayerNorm(hidden, eps=CROSS_LAYER_NORM_EPS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(F.gelu(self.dense(x)))


class MLMHead(nn.Module):
    """Masked-language-modelling head (BERT prediction head: dense, GELU, LayerNorm, decoder + bias);
    used by ``alignbench train``."""

    def __init__(self, hidden: int, vocab_size: int) -> None:
        super().__init__()
        self.transform = MLMTransform(hidden)
        self.decoder = nn.Linear(hidden, vocab_size, bias=False)
        self.bias = nn.Parameter(torch.zeros(vocab_size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Vocabulary logits ``[..., vocab]``."""
        return self.decoder(self.transform(x)) + self.bias


def contrastive_projection(hidden: int, out_dim: int) -> nn.Sequential:
    """``Linear -> LayerNorm -> GELU -> Linear`` (state-dict indices 0, 1, 3)."""
    return nn.Sequential(nn.Linear(hidden, hidden), nn.LayerNorm(hidden), nn.GELU(), nn.Linear(hidden, out_dim))


# --------------------------------------------------------------------------- the model


@dataclass
class MeterOutput:
    """Outputs of :meth:`MeterModel.infer` (batch first)."""

    text_encoder_out: torch.Tensor  # [B, L, Dt] RoBERTa output, before cross_modal_text_transform
    image_encoder_out: torch.Tensor  # [B, 1+g*g, Dv] CLIP ln_post output ([B, T+T*g*g, Dv] for clips)
    text_feats: torch.Tensor  # [B, L, H] after the co-attention stack
    image_feats: torch.Tensor  # [B, 1+g*g, H] ([B, T+T*g*g, H] for clips)
    cls_feats: torch.Tensor  # [B, 2H] text pooler ++ image pooler
    cross_attentions: list[torch.Tensor] | None = None  # per layer: text->image probs [B, h, L, 1+g*g] ([..., T+T*g*g])


class MeterModel(nn.Module):
    """METER-layout vision-language model with the reference state-dict layout."""

    def __init__(self, config: MeterConfig) -> None:
        super().__init__()
        self.config = config
        hidden = config.hidden_size
        text_config = RobertaConfig(
            vocab_size=config.vocab_size,
            hidden_size=config.input_text_embed_size,
            num_hidden_layers=config.text_num_layers,
            num_attention_heads=config.text_num_heads,
            intermediate_size=config.text_intermediate_size,
            hidden_act=config.text_hidden_act,
            max_position_embeddings=config.text_max_position_embeddings,
            type_vocab_size=config.text_type_vocab_size,
            layer_norm_eps=config.text_layer_norm_eps,
            pad_token_id=config.text_pad_token_id,
            bos_token_id=config.text_bos_token_id,
            eos_token_id=config.text_eos_token_id,
            attn_implementation="eager",
        )
        self.text_transformer = RobertaModel(text_config, add_pooling_layer=True)
        self.vision_transformer = VisionTower(config)
        self.cross_modal_text_transform = nn.Linear(config.input_text_embed_size, hidden)
        self.cross_modal_image_transform = nn.Linear(config.input_image_embed_size, hidden)
        self.token_type_embeddings = nn.Embedding(2, hidden)
        intermediate = hidden * config.mlp_ratio
        self.cross_modal_image_layers = nn.ModuleList(
            BertCrossLayer(hidden, config.num_heads, intermediate) for _ in range(config.num_top_layer)
        )
        self.cross_modal_text_layers = nn.ModuleList(
            BertCrossLayer(hidden, config.num_heads, intermediate) for _ in range(config.num_top_layer)
        )
        self.cross_modal_image_pooler = Pooler(hidden)
        self.cross_modal_text_pooler = Pooler(hidden)
        self.mlm_score = MLMHead(hidden, config.vocab_size)
        self.itm_score = ITMHead(hidden * 2)
        self.cl_temp = nn.Parameter(torch.tensor(0.07))
        self.vision_proj = contrastive_projection(hidden, config.contrastive_dim)
        self.language_proj = contrastive_projection(hidden, config.contrastive_dim)

    def encode_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """RoBERTa embeddings (positions counted from the pad id) and layers, padding masked."""
        x = self.text_transformer.embeddings(input_ids=input_ids)
        mask = extended_mask(attention_mask, x.dtype)
        for layer in self.text_transformer.encoder.layer:
            x = layer(x, attention_mask=mask)[0]
        return x

    def encode_image(self, pixel_values: torch.Tensor, **masking: torch.Tensor | None) -> torch.Tensor:
        """CLIP visual features ``[B, 1+g*g, Dv]`` (after ``ln_post``, no projection), or
        ``[B, T+T*g*g, Dv]`` for clips ``[B, T, 3, H, W]``; see :meth:`VisualTransformer.forward`
        for the training-time masking arguments."""
        return self.vision_transformer(pixel_values, **masking)

    def fuse(
        self, text_out: torch.Tensor, attention_mask: torch.Tensor, image_out: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """Co-attention stack on encoder outputs: fused text ``x``, fused image ``y`` and the
        text-side cross-attention probabilities of every layer. Both streams of a layer read
        the previous layer's ``x`` and ``y``."""
        x = self.cross_modal_text_transform(text_out) + self.token_type_embeddings.weight[0]
        y = self.cross_modal_image_transform(image_out) + self.token_type_embeddings.weight[1]
        text_mask = extended_mask(attention_mask, x.dtype)
        cross_attentions = []
        for text_layer, image_layer in zip(self.cross_modal_text_layers, self.cross_modal_image_layers, strict=True):
            x_next, t2i = text_layer(x, y, text_mask, None)
            y_next, _ = image_layer(y, x, None, text_mask)
            x, y = x_next, y_next
            cross_attentions.append(t2i)
        return x, y, cross_attentions

    def infer(
        self,
        pixel_values: torch.Tensor,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        output_cross_attentions: bool = False,
    ) -> MeterOutput:
        """The reference ``infer()`` (no masking, image token type 1) on a padded batch of
        images or clips; a clip's image pooler averages its frames' [CLS] features."""
        text_out = self.encode_text(input_ids, attention_mask)
        image_out = self.encode_image(pixel_values)
        x, y, cross_attentions = self.fuse(text_out, attention_mask, image_out)
        frames = frame_count(pixel_values)
        cls_feats = torch.cat([self.cross_modal_text_pooler(x), self.cross_modal_image_pooler(y, frames)], dim=-1)
        return MeterOutput(
            text_encoder_out=text_out,
            image_encoder_out=image_out,
            text_feats=x,
            image_feats=y,
            cls_feats=cls_feats,
            cross_attentions=cross_attentions if output_cross_attentions else None,
        )

    def itm_logits(self, pixel_values: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Image-text matching logits ``[B, 2]``; index 1 is "match"."""
        return self.itm_score(self.infer(pixel_values, input_ids, attention_mask).cls_feats)

    def con_text_proj(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Contrastive text embedding ``[B, D]``: token 0 through the transform (no token type)."""
        text_out = self.encode_text(input_ids, attention_mask)
        return self.language_proj(self.cross_modal_text_transform(text_out[:, 0]))

    def con_image_proj(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Contrastive image embedding ``[B, D]``: CLS through the transform (no token type);
        for clips, the mean of the transformed [CLS] features of the frames."""
        image_out = self.encode_image(pixel_values)
        frames = frame_count(pixel_values)
        if frames == 1:
            return self.vision_proj(self.cross_modal_image_transform(image_out[:, 0]))
        return self.vision_proj(self.cross_modal_image_transform(image_out[:, :frames]).mean(dim=1))


def frame_count(pixel_values: torch.Tensor) -> int:
    """Frames per item: ``T`` for clips ``[B, T, 3, H, W]``, 1 for images ``[B, 3, H, W]``."""
    return pixel_values.shape[1] if pixel_values.dim() == 5 else 1


def adapt_position_encoding(state_dict: dict[str, torch.Tensor], after: int, patch_size: int) -> dict[str, torch.Tensor]:
    """Re-grid the visual position embedding of ``state_dict`` to an ``after``-pixel input.

    The patch rows are resized as a square grid with ``F.interpolate(mode="bicubic",
    align_corners=False)``; the CLS row stays first. The fixed sin-cos
    ``decoder_pos_embed`` (pre-training only) is dropped when its grid no longer fits (the
    reference drops it always). Returns a new dict; the input is not modified.
    """
    if after % patch_size:
        raise ValueError(f"image size {after} is not a multiple of patch size {patch_size}")
    out = dict(state_dict)
    grid_after = after // patch_size
    pos = out.get(POS_EMBED_KEY)
    if pos is not None:
        grid_before = math.isqrt(pos.shape[0] - 1)
        if grid_before**2 != pos.shape[0] - 1:
            raise ValueError(f"{POS_EMBED_KEY} has {pos.shape[0] - 1} patch rows, not a square grid")
        if grid_before != grid_after:
            dim = pos.shape[1]
            grid = pos[1:].float().reshape(grid_before, grid_before, dim).permute(2, 0, 1)[None]
            grid = F.interpolate(grid, size=(grid_after, grid_after), mode="bicubic", align_corners=False)
            patches = grid[0].permute(1, 2, 0).reshape(grid_after**2, dim).to(pos.dtype)
            out[POS_EMBED_KEY] = torch.cat([pos[:1], patches], dim=0)
    decoder_pos = out.get(DECODER_POS_EMBED_KEY)
    if decoder_pos is not None and decoder_pos.shape[1] != grid_after**2 + 1:
        del out[DECODER_POS_EMBED_KEY]
    return out
