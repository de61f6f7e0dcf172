"""Tensor functions behind the attention visualisations: attention maps, rollout, gradient relevance (ViT,
BERT, CLIP), position embeddings, CLIP's objective.

References, one per function (details in each docstring):

* Dosovitskiy et al. 2021, "An Image is Worth 16x16 Words" (ViT), Fig. 6 (class-token attention, rolled out),
  Fig. 7 centre (position-embedding similarity) and Fig. 7 right (mean attention distance).
* Abnar & Zuidema 2020, "Quantifying Attention Flow in Transformers" (attention rollout), with the
  head-fusion and discard options of the widely used `vit-explain` implementation (Gildenblat, 2020).
* Radford et al. 2021, "Learning Transferable Visual Models From Natural Language Supervision" (CLIP),
  Fig. 3 (symmetric contrastive loss) and section 3.1.4 (prompt ensembling).
* Chefer, Gur & Wolf 2021, "Generic Attention-model Explainability for Interpreting Bi-Modal and
  Encoder-Decoder Transformers" (gradient-weighted relevance, eq. 5-6 for self-attention; its CLIP use), the
  gradient x attention form of their "Transformer Interpretability Beyond Attention Visualization" (2021):
  `gradient_relevance`, `classifier_relevance`, `clip_relevance`.

Attention conventions: `attentions` is a sequence with one tensor per layer, each (1, heads, T, T) as
returned by Hugging Face models with `output_attentions=True` (a (heads, T, T) tensor without the batch axis
is accepted too). Rows are queries, columns keys; token 0 is the class token and tokens 1..T-1 are the
patches in row-major order (left to right, then top to bottom), so T = 1 + gh * gw for a gh x gw grid.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .model import pool_at_end_of_text

HEAD_FUSIONS = ("mean", "max", "min")


def _stack_attentions(attentions: Sequence[torch.Tensor]) -> torch.Tensor:
    """(L, heads, T, T) from per-layer (1, heads, T, T) or (heads, T, T) tensors."""
    if isinstance(attentions, torch.Tensor):
        raise TypeError("`attentions` is a sequence of per-layer tensors, not one tensor.")
    if len(attentions) == 0:
        raise ValueError("`attentions` is empty.")
    layers = []
    for index, layer in enumerate(attentions):
        if layer.dim() == 4:
            if layer.shape[0] != 1:
                raise ValueError(f"layer {index}: batch size {layer.shape[0]}; pass one image (batch size 1).")
            layer = layer[0]
        if layer.dim() != 3 or layer.shape[-1] != layer.shape[-2]:
            raise ValueError(f"layer {index}: expected (1, heads, T, T), got {tuple(layer.shape)}.")
        layers.append(layer)
    return torch.stack(layers)


def _check_grid(tokens: int, grid_hw: tuple[int, int], has_cls: bool = True) -> None:
    expected = int(has_cls) + grid_hw[0] * grid_hw[1]
    if tokens != expected:
        cls_part = "1 + " if has_cls else ""
        raise ValueError(
            f"{tokens} tokens do not fit a {grid_hw[0]}x{grid_hw[1]} grid ({cls_part}gh*gw = {expected})."
        )


def cls_attention_grid(attentions: Sequence[torch.Tensor], grid_hw: tuple[int, int]) -> torch.Tensor:
    """How much the class token attends to each patch, per layer and head: (L, heads, gh, gw).

    Row 0 of each attention matrix (the class token as query), patch columns 1..T-1, reshaped row-major to
    the patch grid: the raw per-head maps. (ViT Fig. 6 shows the same class-token view after attention
    rollout, `attention_rollout` + `cls_rollout_grid`.)
    """
    stacked = _stack_attentions(attentions)
    _check_grid(stacked.shape[-1], grid_hw)
    return stacked[:, :, 0, 1:].reshape(stacked.shape[0], stacked.shape[1], *grid_hw)


def attention_rollout(
    attentions: Sequence[torch.Tensor], head_fusion: str = "mean", discard_ratio: float = 0.0
) -> torch.Tensor:
    """Attention rollout (Abnar & Zuidema 2020): how much each output token draws on each input token.

    Per layer: the heads are fused into one (T, T) matrix by their mean (the paper), max or min
    (`vit-explain`'s options); optionally the lowest `discard_ratio` fraction of its T*T weights is set to
    zero, never the class-token-to-itself entry (as in `vit-explain`, except that exactly that many others
    go; ties are broken by position, so the result is deterministic); the residual connection is modelled
    by A = 0.5 * W + 0.5 * I; rows are renormalised to sum to 1 (needed after max/min fusion or
    discarding). The layers are then chained, rollout = A_L @ ... @ A_1. Row i of the (T, T) result is
    output token i's attribution over the input tokens; row 0 over the patches is the usual rollout map
    (see `cls_rollout_grid`).

    Unlike `vit-explain`, whose division by the row sums broadcasts along the wrong axis (its issue #16),
    the rows here are normalised as the paper intends.
    """
    if head_fusion not in HEAD_FUSIONS:
        raise ValueError(f"head_fusion must be one of {HEAD_FUSIONS}, got {head_fusion!r}.")
    if not 0.0 <= discard_ratio < 1.0:
        raise ValueError(f"discard_ratio must be in [0, 1), got {discard_ratio}.")
    stacked = _stack_attentions(attentions)
    # float64: twelve or more chained products of 197x197 matrices stay exactly row-stochastic.
    stacked = stacked.detach().to(torch.float64)
    tokens = stacked.shape[-1]
    identity = torch.eye(tokens, dtype=torch.float64, device=stacked.device)
    rollout = identity.clone()
    for layer in stacked:
        if head_fusion == "mean":
            fused = layer.mean(dim=0)
        elif head_fusion == "max":
            fused = layer.amax(dim=0)
        else:
            fused = layer.amin(dim=0)
        dropped = int(tokens * tokens * discard_ratio)
        if dropped > 0:
            flat = fused.flatten().clone()
            order = torch.argsort(flat, stable=True)
            order = order[order != 0][:dropped]  # index 0 is the class token attending to itself
            flat[order] = 0.0
            fused = flat.view(tokens, tokens)
        residual = 0.5 * fused + 0.5 * identity
        residual = residual / residual.sum(dim=-1, keepdim=True)
        rollout = residual @ rollout
    return rollout.to(attentions[0].dtype if attentions[0].is_floating_point() else torch.float32)


def cls_rollout_grid(rollout: torch.Tensor, grid_hw: tuple[int, int]) -> torch.Tensor:
    """The class token's row of a rollout over the patches, reshaped row-major to (gh, gw).

    Values are the raw rollout weights (they sum, with the class token's own share, to 1); scale them for
    display as needed.
    """
    _check_grid(rollout.shape[-1], grid_hw)
    return rollout[0, 1:].reshape(*grid_hw)


def position_similarity_grid(
    pos_embed: torch.Tensor, grid_hw: tuple[int, int], has_cls: bool = True
) -> torch.Tensor:
    """Cosine similarity between the position embeddings of every pair of patches: (gh, gw, gh, gw).

    ViT Fig. 7 centre: tile [r, c] of the result, a (gh, gw) map, is how similar patch (r, c)'s embedding is
    to every other patch's. `pos_embed` is (T, D) or (1, T, D) (HF ViT stores (1, T, D), CLIP (T, D)); with
    `has_cls` its first row, the class token's, is dropped.
    """
    if pos_embed.dim() == 3:
        if pos_embed.shape[0] != 1:
            raise ValueError(f"expected (1, T, D) or (T, D), got {tuple(pos_embed.shape)}.")
        pos_embed = pos_embed[0]
    if pos_embed.dim() != 2:
        raise ValueError(f"expected (1, T, D) or (T, D), got {tuple(pos_embed.shape)}.")
    _check_grid(pos_embed.shape[0], grid_hw, has_cls)
    patches = pos_embed[1:] if has_cls else pos_embed
    unit = F.normalize(patches.detach().float(), dim=-1)
    return (unit @ unit.T).reshape(*grid_hw, *grid_hw)


def mean_attention_distance(
    attentions: Sequence[torch.Tensor], grid_hw: tuple[int, int], patch_size: int | tuple[int, int]
) -> torch.Tensor:
    """Attention distance in pixels per layer and head: (L, heads). ViT Fig. 7 right.

    For each query patch, the distance (in pixels, between patch positions on the grid, `patch_size` apart)
    to each key patch is averaged with the query's attention weights as weights, then averaged over all
    query patches. The class token is ignored as query and as key; the remaining weights of each query are
    renormalised to sum to 1 so the result is a true weighted mean. (Some re-implementations skip the
    renormalisation, which counts attention to the class token as distance 0.)
    """
    stacked = _stack_attentions(attentions).detach().to(torch.float64)
    _check_grid(stacked.shape[-1], grid_hw)
    patch_h, patch_w = (patch_size, patch_size) if isinstance(patch_size, int) else patch_size
    rows, cols = torch.meshgrid(torch.arange(grid_hw[0]), torch.arange(grid_hw[1]), indexing="ij")
    positions = torch.stack([rows.flatten() * patch_h, cols.flatten() * patch_w], dim=-1).to(torch.float64)
    distances = torch.cdist(positions, positions).to(stacked.device)  # (N, N), N = gh * gw
    weights = stacked[:, :, 1:, 1:]
    weights = weights / weights.sum(dim=-1, keepdim=True).clamp_min(1e-12)
    per_query = (weights * distances).sum(dim=-1)  # (L, heads, N)
    return per_query.mean(dim=-1).float()


def relevance_rule(attentions: Sequence[torch.Tensor], gradients: Sequence[torch.Tensor]) -> torch.Tensor:
    """Gradient-weighted relevance (Chefer et al. 2021) from each layer's attention and its gradient.

    `attentions` (per layer (B, heads, T, T), first layer first) and the gradients of a scalar target with
    respect to them. Starting from R = I (each token is relevant to itself), every layer in order adds
        A_bar = mean over heads of (grad * A), negatives clamped to 0;   R <- R + A_bar @ R.
    Unlike rollout, a head counts only as far as the output depends on it (the gradient) and only for its
    positive contributions. Returns (B, T, T): row i is output token i's relevance over the input tokens
    ([CLS]'s row for a classifier, the pooled token's for a CLIP tower).
    """
    batch, tokens = attentions[0].shape[0], attentions[0].shape[-1]
    # float64, as rollout: the products of many layers stay exact.
    relevance = torch.eye(tokens, dtype=torch.float64, device=attentions[0].device).expand(batch, tokens, tokens)
    for probs, gradient in zip(attentions, gradients, strict=True):
        weighted = (gradient.detach() * probs.detach()).to(torch.float64).clamp(min=0).mean(dim=1)  # (B, T, T)
        relevance = relevance + weighted @ relevance
    return relevance.float()


def gradient_relevance(attentions: Sequence[torch.Tensor], target: torch.Tensor) -> torch.Tensor:
    """`relevance_rule` for a scalar `target` (a class logit, a similarity; summed over a batch, whose items do
    not mix) computed from `attentions`, the model's own probabilities, still in the graph."""
    return relevance_rule(attentions, torch.autograd.grad(target, list(attentions)))


def classifier_relevance(model, classes: torch.Tensor | None = None, **inputs) -> tuple[torch.Tensor, torch.Tensor,
                                                                                       tuple[torch.Tensor, ...]]:
    """Relevance for a classifier's logit of `classes` (B,) (default: each item's predicted class).

    `model` is a core `Transformer` with a classification head (ViT, BERT, DistilBERT); `inputs` are its
    forward arguments (`pixel_values=` or `input_ids=`, `token_type_ids=`, ...). Returns the relevance
    (B, T, T), the logits (B, K) and the detached attentions, so one pass serves rollout too.
    """
    with torch.enable_grad():
        out = model(**inputs, output_attentions=True, track_gradients=True)
        chosen = out.logits.argmax(dim=-1) if classes is None else torch.as_tensor(classes).reshape(-1)
        target = out.logits.gather(1, chosen[:, None].to(out.logits.device)).sum()
        relevance = gradient_relevance(out.attentions, target)
    return relevance, out.logits.detach(), tuple(a.detach() for a in out.attentions)


@dataclass(frozen=True)
class CLIPRelevance:
    """Why one picture and one caption match: each tower's relevance (T, T) for their cosine similarity.

    Read the image's from [CLS]'s row (`image[0, 1:]` over the patches) and the caption's from the row of the
    end-of-text token it is pooled at (`text[pooled]`); the attentions come detached, for rollout.
    """

    image: torch.Tensor
    text: torch.Tensor
    pooled: int
    similarity: float
    image_attentions: tuple[torch.Tensor, ...]
    text_attentions: tuple[torch.Tensor, ...]


def clip_relevance(model, input_ids: torch.Tensor, pixel_values: torch.Tensor,
                   attention_mask: torch.Tensor | None = None) -> CLIPRelevance:
    """Both towers' relevance for cos(picture, caption) of one (1, ...) picture and one (1, T) caption.

    As in Chefer et al.'s bi-modal paper applied to CLIP: the target is the pair's similarity, and each
    tower's self-attention is explained by the same rule (`gradient_relevance`), with one backward pass.
    """
    if input_ids.shape[0] != 1 or pixel_values.shape[0] != 1:
        raise ValueError("one picture and one caption at a time.")
    with torch.enable_grad():
        image, image_attentions = model.encode_image(pixel_values, output_attentions=True, track_gradients=True)
        text, text_attentions = model.encode_text(input_ids, attention_mask, output_attentions=True,
                                                  track_gradients=True)
        similarity = (image * text).sum()
        gradients = torch.autograd.grad(similarity, [*image_attentions, *text_attentions])
    layers = len(image_attentions)  # each tower's rule runs over its own layers
    # The position the caption is pooled at: the model's own pooling rule applied to the positions themselves.
    pooled = int(pool_at_end_of_text(input_ids, torch.arange(input_ids.shape[1])[None, :, None],
                                     model.config.eos_token_id))
    return CLIPRelevance(image=relevance_rule(image_attentions, gradients[:layers])[0],
                         text=relevance_rule(text_attentions, gradients[layers:])[0], pooled=pooled,
                         similarity=float(similarity.detach()),
                         image_attentions=tuple(a.detach() for a in image_attentions),
                         text_attentions=tuple(a.detach() for a in text_attentions))


@dataclass(frozen=True)
class ContrastiveBatch:
    """CLIP's training objective on one batch of N matched (image, text) pairs; pair i is on the diagonal.

    similarity: (N, N) cosine similarities, rows images, columns texts.
    logits: similarity / temperature.
    image_to_text: row softmax of the logits, each image's distribution over the texts.
    text_to_image: column softmax of the logits, each text's distribution over the images (columns sum to 1).
    loss_image_to_text, loss_text_to_image: mean cross-entropy of the rows, and of the columns, against the
    diagonal; loss: their mean, the symmetric InfoNCE loss.
    """

    similarity: torch.Tensor
    logits: torch.Tensor
    image_to_text: torch.Tensor
    text_to_image: torch.Tensor
    loss_image_to_text: float
    loss_text_to_image: float
    loss: float


def contrastive_batch(
    image_embeds: torch.Tensor, text_embeds: torch.Tensor, temperature: float
) -> ContrastiveBatch:
    """The symmetric contrastive (InfoNCE) loss of CLIP, Fig. 3 pseudocode, with everything shown on the way.

    `image_embeds` and `text_embeds` are (N, D) projections (normalised here); `temperature` is CLIP's
    tau, the inverse of the logit scale: a trained CLIP has logit_scale = exp(t) = 100, i.e. tau = 0.01.
    """
    if image_embeds.dim() != 2 or image_embeds.shape != text_embeds.shape:
        raise ValueError(
            f"need N image and N text embeddings of one width, got {tuple(image_embeds.shape)} and "
            f"{tuple(text_embeds.shape)}."
        )
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, got {temperature}.")
    images = F.normalize(image_embeds.detach().float(), dim=-1)
    texts = F.normalize(text_embeds.detach().float(), dim=-1)
    similarity = images @ texts.T
    logits = similarity / temperature
    targets = torch.arange(logits.shape[0])
    loss_images = F.cross_entropy(logits, targets)
    loss_texts = F.cross_entropy(logits.T, targets)
    return ContrastiveBatch(
        similarity=similarity,
        logits=logits,
        image_to_text=logits.softmax(dim=1),
        text_to_image=logits.softmax(dim=0),
        loss_image_to_text=float(loss_images),
        loss_text_to_image=float(loss_texts),
        loss=float((loss_images + loss_texts) / 2),
    )


def zero_shot_ranking(
    image_embed: torch.Tensor, label_text_embeds: torch.Tensor, logit_scale: float | torch.Tensor
) -> torch.Tensor:
    """Zero-shot class probabilities (K,) for one image, in the order of the labels (CLIP section 3.1.2).

    softmax(logit_scale * cos(image, label_k)). `logit_scale` is the multiplier itself, exp(t) (100 for
    the released CLIP models; pass `model.logit_scale.exp()` for a Hugging Face CLIPModel). Sort the result
    (`torch.sort(..., descending=True)`) for a ranking.
    """
    if image_embed.dim() == 2:
        if image_embed.shape[0] != 1:
            raise ValueError(f"one image at a time: got {image_embed.shape[0]} embeddings.")
        image_embed = image_embed[0]
    if label_text_embeds.dim() != 2 or image_embed.dim() != 1 or image_embed.shape[0] != label_text_embeds.shape[1]:
        raise ValueError(
            f"expected a (D,) image embedding and (K, D) label embeddings, got {tuple(image_embed.shape)} and "
            f"{tuple(label_text_embeds.shape)}."
        )
    image = F.normalize(image_embed.detach().float(), dim=-1)
    labels = F.normalize(label_text_embeds.detach().float(), dim=-1)
    scale = float(logit_scale)
    if not math.isfinite(scale) or scale <= 0:
        raise ValueError(f"logit_scale must be a positive multiplier, got {scale}.")
    return (scale * (labels @ image)).softmax(dim=-1)


def ensemble_text_embeddings(embeds_per_template: Sequence[torch.Tensor] | torch.Tensor) -> torch.Tensor:
    """Prompt ensembling (CLIP section 3.1.4): one embedding per class from several prompt templates.

    `embeds_per_template` holds, for each of M templates ("a photo of a {}.", ...), a (K, D) tensor of the
    K class prompts' text embeddings, as a sequence or an (M, K, D) tensor. Each embedding is L2-normalised,
    the M are averaged per class, and the mean is normalised again: (K, D) unit vectors, the
    "embedding space" ensemble of the paper (as in its zero-shot notebook).
    """
    stacked = embeds_per_template if isinstance(embeds_per_template, torch.Tensor) else torch.stack(
        list(embeds_per_template)
    )
    if stacked.dim() != 3 or stacked.shape[0] == 0:
        raise ValueError(f"expected M templates x (K, D) embeddings, got {tuple(stacked.shape)}.")
    unit = F.normalize(stacked.detach().float(), dim=-1)
    return F.normalize(unit.mean(dim=0), dim=-1)


__all__ = [
    "CLIPRelevance",
    "ContrastiveBatch",
    "attention_rollout",
    "cls_attention_grid",
    "classifier_relevance",
    "clip_relevance",
    "cls_rollout_grid",
    "contrastive_batch",
    "ensemble_text_embeddings",
    "gradient_relevance",
    "mean_attention_distance",
    "position_similarity_grid",
    "relevance_rule",
    "zero_shot_ranking",
]
