"""core.analysis vision functions on small cases whose answers are worked out by hand."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from core.analysis import (
    ContrastiveBatch,
    attention_rollout,
    cls_attention_grid,
    cls_rollout_grid,
    contrastive_batch,
    ensemble_text_embeddings,
    mean_attention_distance,
    position_similarity_grid,
    zero_shot_ranking,
)


def layers(*matrices: torch.Tensor) -> list[torch.Tensor]:
    """Per-layer (1, heads, T, T) tensors; each argument is (heads, T, T) or a single-head (T, T)."""
    return [(m if m.dim() == 3 else m[None])[None].double() for m in matrices]


# ---------------------------------------------------------------------------------------------------------
# cls_attention_grid


def test_cls_attention_grid_picks_row_zero_in_row_major_order():
    grid_hw, heads, tokens = (2, 3), 2, 7
    per_layer = []
    for layer in range(2):
        attention = torch.full((heads, tokens, tokens), -1.0)  # everything but row 0 is a decoy
        for head in range(heads):
            attention[head, 0, 0] = -2.0  # the class token's attention to itself is not part of the grid
            attention[head, 0, 1:] = 100 * layer + 10 * head + torch.arange(6.0)
        per_layer.append(attention[None])
    grid = cls_attention_grid(per_layer, grid_hw)
    assert grid.shape == (2, heads, 2, 3)
    for layer in range(2):
        for head in range(heads):
            for row in range(2):
                for col in range(3):
                    assert grid[layer, head, row, col] == 100 * layer + 10 * head + row * 3 + col
    # The batch axis is optional.
    assert torch.equal(cls_attention_grid([a[0] for a in per_layer], grid_hw), grid)


def test_cls_attention_grid_rejects_mismatched_grid():
    with pytest.raises(ValueError, match="grid"):
        cls_attention_grid([torch.ones(1, 1, 8, 8)], (2, 3))
    with pytest.raises(ValueError, match="batch size"):
        cls_attention_grid([torch.ones(2, 1, 7, 7)], (2, 3))


# ---------------------------------------------------------------------------------------------------------
# attention_rollout


@pytest.mark.parametrize("fusion", ["mean", "max", "min"])
@pytest.mark.parametrize("discard", [0.0, 0.5])
def test_rollout_of_identity_attention_is_identity(fusion, discard):
    eye = torch.eye(5).expand(3, 5, 5)
    rollout = attention_rollout(layers(eye, eye, eye), head_fusion=fusion, discard_ratio=discard)
    assert torch.allclose(rollout, torch.eye(5, dtype=rollout.dtype))


@pytest.mark.parametrize("depth", [1, 2, 5])
def test_rollout_of_uniform_attention(depth):
    # U = ones/T is idempotent, so (U/2 + I/2)^L = I / 2^L + (1 - 1/2^L) U.
    tokens = 4
    uniform = torch.full((2, tokens, tokens), 1 / tokens)
    rollout = attention_rollout(layers(*[uniform] * depth))
    expected = torch.eye(tokens) / 2**depth + (1 - 1 / 2**depth) * torch.full((tokens, tokens), 1 / tokens)
    assert torch.allclose(rollout, expected.double())
    assert torch.allclose(rollout.sum(dim=-1), torch.ones(tokens, dtype=rollout.dtype))


def test_rollout_multiplies_later_layers_on_the_left():
    first = torch.tensor([[1.0, 0.0], [0.5, 0.5]])
    second = torch.tensor([[0.2, 0.8], [0.0, 1.0]])
    a1 = 0.5 * first + 0.5 * torch.eye(2)  # rows already sum to 1
    a2 = 0.5 * second + 0.5 * torch.eye(2)
    rollout = attention_rollout(layers(first, second))
    assert torch.allclose(rollout, (a2 @ a1).double())
    assert not torch.allclose(rollout, (a1 @ a2).double())  # the order matters for this pair


def test_rollout_head_fusion():
    swap = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    heads = torch.stack([torch.eye(2), swap])
    # mean: 0.5 everywhere -> A = [[.75, .25], [.25, .75]]
    expected_mean = torch.tensor([[0.75, 0.25], [0.25, 0.75]]).double()
    assert torch.allclose(attention_rollout(layers(heads), "mean"), expected_mean)
    # max: ones -> A = [[1, .5], [.5, 1]] -> rows renormalised
    expected_max = torch.tensor([[2 / 3, 1 / 3], [1 / 3, 2 / 3]]).double()
    assert torch.allclose(attention_rollout(layers(heads), "max"), expected_max)
    # min: zeros -> A = I / 2 -> renormalised to I
    assert torch.allclose(attention_rollout(layers(heads), "min"), torch.eye(2).double())
    with pytest.raises(ValueError, match="head_fusion"):
        attention_rollout(layers(heads), "median")


def test_rollout_discard_ratio():
    weights = torch.tensor([[0.6, 0.4], [0.1, 0.9]])
    # 25 % of 4 entries: the 0.1 goes -> A = [[.8, .2], [0, .95]] -> rows [[.8, .2], [0, 1]]
    quarter = attention_rollout(layers(weights), discard_ratio=0.25)
    assert torch.allclose(quarter, torch.tensor([[0.8, 0.2], [0.0, 1.0]]).double())
    # 50 %: 0.1 and 0.4 go -> A = [[.8, 0], [0, .95]] -> I
    half = attention_rollout(layers(weights), discard_ratio=0.5)
    assert torch.allclose(half, torch.eye(2).double())
    # The class token's attention to itself is never discarded, even when it is the smallest weight; the
    # next smallest goes instead (0.5 twice: the first in position, [1, 0]).
    weights = torch.tensor([[0.05, 0.95], [0.5, 0.5]])
    kept_cls = attention_rollout(layers(weights), discard_ratio=0.25)
    assert torch.allclose(kept_cls, torch.tensor([[0.525, 0.475], [0.0, 1.0]]).double())
    with pytest.raises(ValueError, match="discard_ratio"):
        attention_rollout(layers(weights), discard_ratio=1.0)


def test_cls_rollout_grid():
    rollout = torch.arange(49.0).reshape(7, 7)
    grid = cls_rollout_grid(rollout, (2, 3))
    assert torch.equal(grid, torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]))


# ---------------------------------------------------------------------------------------------------------
# position_similarity_grid


def test_position_similarity_rows_share_embeddings():
    # 2x3 grid: every patch of grid row r has a positive multiple of basis vector e_r, so cosine similarity is
    # 1 within a row and 0 across rows, whatever the multiples.
    cls = torch.tensor([[0.3, -0.2, 0.9, 0.1]])
    patches = torch.tensor(
        [[1.0, 0, 0, 0], [2.0, 0, 0, 0], [0.5, 0, 0, 0], [0, 3.0, 0, 0], [0, 1.0, 0, 0], [0, 7.0, 0, 0]]
    )
    similarity = position_similarity_grid(torch.cat([cls, patches])[None], (2, 3))
    assert similarity.shape == (2, 3, 2, 3)
    for r in range(2):
        for c in range(3):
            expected = torch.zeros(2, 3)
            expected[r] = 1.0
            assert torch.allclose(similarity[r, c], expected, atol=1e-6)
    without_cls = position_similarity_grid(patches, (2, 3), has_cls=False)
    assert torch.allclose(without_cls, similarity)


def test_position_similarity_known_angles():
    # 1x3 grid with embeddings at 0, 60 and 90 degrees: cos = 1/2 between the first two, 0 between 1 and 3.
    angles = torch.tensor([0.0, math.pi / 3, math.pi / 2])
    patches = torch.stack([angles.cos(), angles.sin()], dim=-1)
    similarity = position_similarity_grid(patches, (1, 3), has_cls=False)
    assert similarity[0, 0, 0, 1].item() == pytest.approx(0.5, abs=1e-6)
    assert similarity[0, 0, 0, 2].item() == pytest.approx(0.0, abs=1e-6)
    assert torch.allclose(similarity[0, :, 0, :], similarity[0, :, 0, :].T)  # symmetric
    with pytest.raises(ValueError, match="grid"):
        position_similarity_grid(patches, (2, 2), has_cls=False)


# ---------------------------------------------------------------------------------------------------------
# mean_attention_distance


def patch_attention(patch_weights: torch.Tensor, cls_share: float = 0.0) -> torch.Tensor:
    """(T, T) attention from (N, N) patch-to-patch weights, each patch query giving `cls_share` to the CLS."""
    n = patch_weights.shape[0]
    attention = torch.zeros(n + 1, n + 1)
    attention[0] = 1 / (n + 1)
    attention[1:, 0] = cls_share
    attention[1:, 1:] = patch_weights * (1 - cls_share)
    return attention


def neighbour_matrix(grid_hw: tuple[int, int], step: tuple[int, int]) -> torch.Tensor:
    """Each patch attends fully to the patch `step` away (reflected back at the border)."""
    gh, gw = grid_hw
    weights = torch.zeros(gh * gw, gh * gw)
    for r in range(gh):
        for c in range(gw):
            rr = r + step[0] if 0 <= r + step[0] < gh else r - step[0]
            cc = c + step[1] if 0 <= c + step[1] < gw else c - step[1]
            weights[r * gw + c, rr * gw + cc] = 1.0
    return weights


def test_attention_to_itself_has_distance_zero():
    attention = patch_attention(torch.eye(9), cls_share=0.3)
    distance = mean_attention_distance(layers(attention, attention), (3, 3), 16)
    assert distance.shape == (2, 1)
    assert torch.allclose(distance, torch.zeros(2, 1))


def test_attention_to_a_neighbour_is_one_patch_away():
    grid = (3, 4)
    horizontal = patch_attention(neighbour_matrix(grid, (0, 1)))
    vertical = patch_attention(neighbour_matrix(grid, (1, 0)), cls_share=0.5)  # CLS share is renormalised away
    diagonal = patch_attention(neighbour_matrix(grid, (1, 1)))
    heads = torch.stack([horizontal, vertical, diagonal])
    distance = mean_attention_distance(layers(heads), grid, 16)
    assert torch.allclose(distance, torch.tensor([[16.0, 16.0, 16 * math.sqrt(2)]]))
    rectangular = mean_attention_distance(layers(heads), grid, (8, 16))  # (patch height, patch width)
    assert torch.allclose(rectangular, torch.tensor([[16.0, 8.0, math.hypot(8, 16)]]))


def test_uniform_attention_distance_on_two_patches():
    # 1x2 grid, each query splits its attention evenly: 0.5 * 0 + 0.5 * 14 = 7.
    attention = patch_attention(torch.full((2, 2), 0.5))
    assert mean_attention_distance(layers(attention), (1, 2), 14).item() == pytest.approx(7.0)


# ---------------------------------------------------------------------------------------------------------
# contrastive_batch


def test_infonce_of_a_perfect_diagonal_at_low_temperature_is_near_zero():
    images = torch.eye(4) * torch.tensor([[1.0], [2.0], [0.5], [3.0]])  # norms do not matter
    result = contrastive_batch(images, torch.eye(4), temperature=0.01)
    assert isinstance(result, ContrastiveBatch)
    assert torch.allclose(result.similarity, torch.eye(4))
    assert result.loss < 1e-6
    assert torch.allclose(result.image_to_text, torch.eye(4), atol=1e-6)


@pytest.mark.parametrize("n", [2, 5])
def test_infonce_of_uniform_similarities_is_log_n(n):
    same = torch.ones(n, 3)
    result = contrastive_batch(same, same, temperature=0.07)
    assert result.loss == pytest.approx(math.log(n), rel=1e-6)
    assert result.loss_image_to_text == pytest.approx(math.log(n), rel=1e-6)
    assert result.loss_text_to_image == pytest.approx(math.log(n), rel=1e-6)
    assert torch.allclose(result.image_to_text, torch.full((n, n), 1 / n))


def test_contrastive_losses_match_cross_entropy():
    generator = torch.Generator().manual_seed(0)
    images, texts = torch.randn(6, 8, generator=generator), torch.randn(6, 8, generator=generator)
    temperature = 0.2
    result = contrastive_batch(images, texts, temperature)
    cosine = F.cosine_similarity(images[:, None, :], texts[None, :, :], dim=-1)
    assert torch.allclose(result.similarity, cosine, atol=1e-6)
    assert torch.allclose(result.logits, cosine / temperature, atol=1e-5)
    targets = torch.arange(6)
    image_loss = F.cross_entropy(cosine / temperature, targets).item()
    text_loss = F.cross_entropy(cosine.T / temperature, targets).item()
    assert result.loss_image_to_text == pytest.approx(image_loss, rel=1e-5)
    assert result.loss_text_to_image == pytest.approx(text_loss, rel=1e-5)
    assert result.loss == pytest.approx((image_loss + text_loss) / 2, rel=1e-5)
    assert torch.allclose(result.image_to_text.sum(dim=1), torch.ones(6))
    assert torch.allclose(result.text_to_image.sum(dim=0), torch.ones(6))
    # By hand for one row: -log(exp(l_00) / sum_j exp(l_0j)).
    row = cosine[0] / temperature
    assert (-(row[0] - torch.logsumexp(row, 0))).item() == pytest.approx(
        F.cross_entropy(row[None], targets[:1]).item(), rel=1e-6
    )
    with pytest.raises(ValueError):
        contrastive_batch(images, texts[:5], temperature)
    with pytest.raises(ValueError, match="temperature"):
        contrastive_batch(images, texts, 0.0)


# ---------------------------------------------------------------------------------------------------------
# zero-shot classification


def test_zero_shot_ranking():
    image = torch.tensor([2.0, 0.0, 0.0])
    labels = torch.tensor([[0.0, 1.0, 0.0], [5.0, 0.0, 0.0], [-1.0, 0.0, 0.0]])  # cos = 0, 1, -1
    probabilities = zero_shot_ranking(image, labels, logit_scale=2.0)
    expected = torch.softmax(torch.tensor([0.0, 2.0, -2.0]), dim=0)
    assert torch.allclose(probabilities, expected)
    assert torch.allclose(zero_shot_ranking(image[None], labels, torch.tensor(2.0)), expected)
    assert torch.argsort(probabilities, descending=True).tolist() == [1, 0, 2]
    with pytest.raises(ValueError, match="logit_scale"):
        zero_shot_ranking(image, labels, 0.0)


def test_ensemble_text_embeddings():
    template_a = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    template_b = torch.tensor([[0.0, 3.0], [1.0, 0.0]])
    ensembled = ensemble_text_embeddings([template_a, template_b])
    root_half = 1 / math.sqrt(2)
    assert torch.allclose(ensembled, torch.tensor([[root_half, root_half], [root_half, root_half]]))
    # Normalised before averaging: a long embedding from one template does not outweigh the others.
    unequal = ensemble_text_embeddings(torch.stack([torch.tensor([[100.0, 0.0]]), torch.tensor([[0.0, 1.0]])]))
    assert torch.allclose(unequal, torch.tensor([[root_half, root_half]]))
    single = ensemble_text_embeddings([torch.tensor([[3.0, 4.0]])])
    assert torch.allclose(single, torch.tensor([[0.6, 0.8]]))
