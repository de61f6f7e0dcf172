"""Gradient-weighted relevance (core.analysis, after Chefer et al. 2021) against a reference computed here from
`transformers`' own attentions and torch.autograd, its rule on hand-made numbers, and how well it finds the
shape in the embedded ViT's held-out pictures."""

from __future__ import annotations

import pytest
import torch
import transformers

from core import analysis, load_model
from core.embedded.evaluate import relevance_localisation
from core.embedded.train import DEFAULT_ROOT
from tests.reference import bert_config, build, distilbert_config, max_difference, save
from tests.test_vision_models import clip_config, clip_text_batch, pixels, vit_config

# Measured: at most 3e-7 between the core's relevance and the reference (float32 attentions and gradients
# from two implementations of the same model); 1e-5 keeps a margin, a wrong layer order or sign moves it by 1e-2.
TOLERANCE = 1e-5


def reference_relevance(attentions, target) -> torch.Tensor:
    """The rule written out once more, on transformers' tensors: R = I; R += mean_h(relu(dA * A)) @ R per layer."""
    gradients = torch.autograd.grad(target, attentions, retain_graph=True)
    tokens = attentions[0].shape[-1]
    relevance = torch.eye(tokens, dtype=torch.float64).repeat(attentions[0].shape[0], 1, 1)
    for probs, gradient in zip(attentions, gradients):
        contribution = torch.relu((gradient * probs).double()).mean(dim=1)
        relevance = relevance + torch.bmm(contribution, relevance)
    return relevance


def tokens(n: int = 2, length: int = 11, vocab: int = 317) -> torch.Tensor:
    return torch.randint(5, vocab, (n, length), generator=torch.Generator().manual_seed(3))


CLASSIFIERS = {
    "vit": (transformers.ViTForImageClassification, vit_config, lambda: {"pixel_values": pixels()}),
    "bert": (transformers.BertForSequenceClassification, bert_config, lambda: {"input_ids": tokens()}),
    "distilbert": (transformers.DistilBertForSequenceClassification, distilbert_config,
                   lambda: {"input_ids": tokens()}),
}


@pytest.mark.parametrize("family", CLASSIFIERS)
def test_classifier_relevance_matches_transformers_and_autograd(family, tmp_path):
    model_class, config, make_inputs = CLASSIFIERS[family]
    reference = build(model_class, config())
    model = load_model(save(reference, tmp_path))
    classes = torch.tensor([1, 2])  # not the predicted ones: a chosen class must be honoured
    out = reference(**make_inputs(), output_attentions=True)
    expected = reference_relevance(out.attentions, out.logits.gather(1, classes[:, None]).sum())
    relevance, logits, attentions = analysis.classifier_relevance(model, classes, **make_inputs())
    difference = max_difference(expected, relevance)
    print(family, difference, float((expected.detach() - torch.eye(expected.shape[-1])).abs().max()))
    assert relevance.shape == expected.shape and len(attentions) == len(out.attentions)
    assert difference < TOLERANCE
    # Not trivially the identity: the layers add relevance of the order of the tolerance's thousandfold.
    assert float((relevance - torch.eye(relevance.shape[-1])).abs().max()) > 1e-2
    predicted, _, _ = analysis.classifier_relevance(model, **make_inputs())
    default = reference_relevance(out.attentions, out.logits.gather(1, out.logits.argmax(-1, keepdim=True)).sum())
    assert max_difference(default, predicted) < TOLERANCE


def test_clip_relevance_matches_transformers_and_autograd(tmp_path):
    reference = build(transformers.CLIPModel, clip_config(97))
    model = load_model(save(reference, tmp_path))
    ids, _ = clip_text_batch(97)
    ids = ids[1:, :6]  # one caption, ending with the end-of-text token at position 5
    picture = pixels(1)
    out = reference(input_ids=ids, pixel_values=picture, output_attentions=True)
    image, text = out.image_embeds, out.text_embeds  # unit vectors
    similarity = (image * text).sum()
    expected_image = reference_relevance(out.vision_model_output.attentions, similarity)[0]
    expected_text = reference_relevance(out.text_model_output.attentions, similarity)[0]
    result = analysis.clip_relevance(model, ids, picture)
    assert result.pooled == 5
    assert abs(result.similarity - float(similarity)) < TOLERANCE
    differences = (max_difference(expected_image, result.image), max_difference(expected_text, result.text))
    print("clip", differences)
    assert max(differences) < TOLERANCE
    assert result.image.shape == (37, 37) and result.text.shape == (6, 6)
    assert float(result.text[5, :5].sum()) > 1e-3  # the caption's own tokens matter to the match


def test_rule_keeps_positive_contributions_averages_heads_and_chains_layers():
    # One token pair, two heads: head 1 adds dA * A = 2 * 0.5 = 1, head 2 adds -1 (clamped to 0): mean 0.5.
    attention = torch.tensor([[[[0.5, 0.5], [0.0, 1.0]], [[0.5, 0.5], [0.0, 1.0]]]])  # (1, 2, 2, 2)
    gradient = torch.tensor([[[[0.0, 2.0], [0.0, 0.0]], [[0.0, -2.0], [0.0, 0.0]]]])
    one = analysis.relevance_rule([attention], [gradient])[0]
    assert torch.allclose(one, torch.tensor([[1.0, 0.5], [0.0, 1.0]]))
    # Two such layers: R = (I + B)(I + B) with B = [[0, 0.5], [0, 0]], so the pair's relevance doubles.
    two = analysis.relevance_rule([attention, attention], [gradient, gradient])[0]
    assert torch.allclose(two, torch.tensor([[1.0, 1.0], [0.0, 1.0]]))
    # Later layers multiply on the left: with the second layer's contribution on the other pair, order matters.
    other = gradient.flip(-1).flip(-2)  # head 1: dA at (1, 0)
    forward = analysis.relevance_rule([attention, attention], [gradient, other])[0]
    assert forward[1, 0] == 0.0  # A(1, 0) = 0: nothing is added however large the gradient


def test_relevance_finds_the_shape_far_better_than_a_random_map():
    figures = relevance_localisation(DEFAULT_ROOT / "tiny-vit", 128)
    print("localisation over 128 held-out pictures:", figures)
    assert figures["top_patches"] == 6 and figures["images"] == 128
    # Measured on 1000 pictures (`evaluate --only tiny-vit-localisation`): relevance 0.843, rollout 0.867, random 0.135.
    assert figures["relevance"] >= figures["random"] + 0.5
    assert figures["rollout"] >= figures["random"] + 0.5
