"""Why does the CNN + RN not learn Sort-of-CLEVR's unary questions at CPU scale? A probe of recipes.

Each variant trains seed 000's CLEVR model (`clevr_rn`, k = C) from seed 0 on ``--images`` generated
training images for ``--steps`` steps of batch 64, one thread, and prints the test split's accuracy on
unary and relational questions (then each kind: shape, left, top, nearest, furthest, count) every 250
steps. Variants (joined with +): ``recipe`` sparsearch's VQA recipe (Adamax 0.002, gradient norm
clipped at 0.25, per-answer sigmoid loss); ``adam`` Adam 0.001, softmax cross-entropy, no clipping;
``bow`` a bag-of-words question (summed word vectors) in place of the GRU; ``mean`` the pair sum divided
by the number of pairs; ``mlp`` the CNN + MLP head. ``--overfit`` trains on one batch of 256 questions
(13 images) instead: can the model fit at all?

Usage: python experiments/sort_of_clevr_probe.py recipe adam adam+bow adam+bow+mean [--steps 500]
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from torch import Tensor, nn

import sparsearch.models.relation as relation
from sparsearch.config import TaskFit
from sparsearch.config.relation import clevr_rn
from sparsearch.data.sort_of_clevr import load_sort_of_clevr
from sparsearch.models import build_model
from sparsearch.models.vqa import vqa_loss

VARIANTS = ("recipe", "adam", "bow", "mean", "mlp")


class BagOfWords(nn.Module):
    """tanh of the summed word vectors: the question as the set of its words."""

    def __init__(self, vocab: int, width: int) -> None:
        super().__init__()
        self.words = nn.EmbeddingBag(vocab, width, mode="sum", padding_idx=0)

    def forward(self, tokens: Tensor) -> Tensor:
        return torch.tanh(self.words(tokens))


def accuracy(model: nn.Module, split) -> str:
    model.eval()
    correct, total = torch.zeros(6), torch.zeros(6)
    with torch.no_grad():
        for index in torch.arange(len(split)).split(500):
            batch = split.batch(index)
            right = (model(batch.images, batch.tokens, batch.lengths).argmax(1) == batch.labels).float()
            correct.index_add_(0, split.groups[index], right)
            total.index_add_(0, split.groups[index], torch.ones(len(index)))
    model.train()
    acc = correct / total
    return f"unary {acc[:3].mean():.3f} relational {acc[3:].mean():.3f} | " + " ".join(f"{a:.2f}" for a in acc)


def run(variant: str, images: int, steps: int, overfit: bool) -> None:
    parts = set(variant.split("+"))
    unknown = parts - set(VARIANTS)
    if unknown:
        raise SystemExit(f"unknown variant part(s) {sorted(unknown)}; allowed: {', '.join(VARIANTS)}")
    torch.manual_seed(0)
    data = load_sort_of_clevr(f"train={images},test=200", 75, 0.1, 0)
    config = clevr_rn(head="mlp" if "mlp" in parts else "relation")
    model = build_model(config.for_task(TaskFit("vqa", 10, 3, vocab=len(data.vocab))))
    encode = relation.encode_question
    if "bow" in parts:
        model.bow = BagOfWords(len(data.vocab) + 1, config.question)
        relation.encode_question = lambda embed, gru, tokens, lengths: model.bow(tokens)
    if "mean" in parts:
        pairs, g_rest = config.objects**2, model.g_rest.forward
        model.g_rest.forward = lambda x: g_rest(x) / pairs
    adam = "adam" in parts
    opt = torch.optim.Adam(model.parameters(), 1e-3) if adam else torch.optim.Adamax(model.parameters(), 2e-3)
    generator = torch.Generator().manual_seed(0)
    start, step = time.perf_counter(), 0
    try:
        while step < steps:
            order = torch.arange(256) if overfit else torch.randperm(len(data.train), generator=generator)
            for index in order.split(256 if overfit else 64):
                batch = data.train.batch(index)
                logits = model(batch.images, batch.tokens, batch.lengths)
                if adam:
                    loss = F.cross_entropy(logits, batch.labels)
                else:
                    loss = vqa_loss(logits, F.one_hot(batch.labels, logits.shape[1]).to(logits.dtype))
                opt.zero_grad()
                (loss + 0.01 * model.balance_loss()).backward()
                if not adam:
                    nn.utils.clip_grad_norm_(model.parameters(), 0.25)
                opt.step()
                step += 1
                if overfit and step % 50 == 0:
                    train = (logits.argmax(1) == batch.labels).float().mean()
                    print(f"{variant} step {step} {time.perf_counter() - start:.0f}s train accuracy {train:.3f}")
                elif not overfit and step % 250 == 0:
                    print(f"{variant} step {step} {time.perf_counter() - start:.0f}s {accuracy(model, data.test)}")
                if step >= steps:
                    break
    finally:
        relation.encode_question = encode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("variants", nargs="+", help="e.g. recipe adam adam+bow adam+bow+mean")
    parser.add_argument("--images", type=int, default=2000, help="generated training images")
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--overfit", action="store_true", help="train on one batch of 256 questions")
    args = parser.parse_args()
    torch.set_num_threads(1)
    for variant in args.variants:
        run(variant, args.images, args.steps, args.overfit)


if __name__ == "__main__":
    main()
