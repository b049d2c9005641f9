from __future__ import annotations

import pytest
import torch

from sparsearch.errors import ConfigError
from sparsearch.layers import QuestionGate, TopKBottleneck
from sparsearch.models import create_vqa_model, soft_scores, vqa_accuracy, vqa_loss


def _model(**kwargs: object):
    args = dict(vocab_size=30, num_answers=13, hidden=32, embed_dim=16, input_size=64, k=6, routing="relu_l1")
    return create_vqa_model("clevr_cnn", **(args | kwargs))


def test_the_question_drives_the_backbone_gates_and_the_answer() -> None:
    model = _model().eval()
    gates = [m for m in model.modules() if isinstance(m, TopKBottleneck)]
    assert gates and all(isinstance(g.gate, QuestionGate) for g in gates)
    image = torch.randn(1, 3, 64, 64).expand(8, -1, -1, -1)  # one image, eight questions
    tokens = torch.randint(1, 30, (8, 6))
    logits = model(image, tokens)
    assert logits.shape == (8, 13)
    assert len({tuple(row) for row in gates[0].last_gates.index.sort(1).values.tolist()}) > 1
    assert not torch.allclose(logits[0], logits[1])


def test_padding_forms_agree_and_training_step_runs() -> None:
    model = _model().eval()
    image, words = torch.randn(2, 3, 64, 64), torch.randint(1, 30, (2, 4))
    left = torch.cat([torch.zeros(2, 3, dtype=torch.long), words], dim=1)  # left-padded, seed 002 style
    right = torch.cat([words, torch.zeros(2, 3, dtype=torch.long)], dim=1)
    # With lengths, padding is skipped exactly; left padding feeds zero vectors through the GRU first.
    assert torch.allclose(model(image, words), model(image, right, lengths=torch.tensor([4, 4])), atol=1e-6)
    assert model(image, left).shape == (2, 13)
    model.train()
    scores = soft_scores([[3], [5]], 13, full_at=1)
    loss = vqa_loss(model(image, left), scores)
    loss.backward()
    assert model.embed.weight.grad is not None and loss.item() > 0


def test_soft_scores_and_vqa_accuracy_arithmetic() -> None:
    # 10 annotators: answer 2 given 4 times -> min(1, 4/3) = 1; answer 5 twice -> 2/3; answer 7 once -> 1/3
    scores = soft_scores([[2, 2, 2, 2, 5, 5, 7, 1, 1, 1]], 8)
    assert scores[0].tolist() == pytest.approx([0, 1, 1, 0, 0, 2 / 3, 0, 1 / 3])
    logits = torch.full((3, 8), -5.0)
    logits[0, 2], logits[1, 5], logits[2, 6] = 5.0, 5.0, 5.0  # predictions 2, 5 and 6
    batch = scores.expand(3, -1)
    assert vqa_accuracy(logits, batch).item() == pytest.approx((1 + 2 / 3 + 0) / 3)
    assert soft_scores([[4]], 13, full_at=1)[0, 4].item() == 1.0  # easy-VQA: one answer, full credit
    with pytest.raises(ConfigError, match=r"answer id 13 out of range 0\.\.12 in question 0"):
        soft_scores([[13]], 13)
    with pytest.raises(ConfigError, match="not a ResNeXt-family layout"):
        create_vqa_model("cc_mobilenet_v1", vocab_size=10, num_answers=3)
