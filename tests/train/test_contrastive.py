"""The InfoNCE objective: pairing of logits and labels (SimCLR and MoCo), queue, gradients.

Run: `python -m pytest tests/train/test_contrastive.py -q`.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

import torch.nn.functional as F  # noqa: E402

from train.contrastive import ClipContrast, ContrastConfig  # noqa: E402
from train.model import AUModel, ModelConfig  # noqa: E402

S = 32


def model() -> AUModel:
    torch.manual_seed(0)
    return AUModel(ModelConfig.tiny(crop_size=S))


def views(b: int = 3, t: int = 4, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (b, t, S, S, 3), generator=g).float()


def test_simclr_pairs_each_clip_with_its_other_view():
    objective = ClipContrast(model(), ContrastConfig(temperature=0.1))
    x = views()
    logits, labels = objective(x, x.clone())
    assert logits.shape == (6, 6)
    assert labels.tolist() == [3, 4, 5, 0, 1, 2]
    # identical views: each positive logit is cos 1 / T, the largest in its row
    assert torch.allclose(logits[torch.arange(6), labels], torch.full((6,), 10.0), atol=1e-4)
    assert torch.equal(logits.argmax(1), labels)


def test_simclr_loss_backpropagates_into_cnn_and_gru_not_head():
    objective = ClipContrast(model())
    logits, labels = objective(views(), views(seed=1))
    F.cross_entropy(logits, labels).backward()
    assert objective.encoder.backbone.stem[0].weight.grad.abs().sum() > 0
    assert objective.encoder.gru.hidden_proj.weight.grad.abs().sum() > 0
    assert objective.encoder.head.weight.grad is None


def test_moco_queue_and_momentum_encoder():
    objective = ClipContrast(model(), ContrastConfig(method="moco", queue_size=8))
    before = objective.queue.clone()
    logits, labels = objective(views(), views(seed=1))
    assert logits.shape == (3, 1 + 8) and labels.tolist() == [0, 0, 0]
    assert int(objective.queue_pointer) == 3
    assert not torch.equal(objective.queue[:3], before[:3])
    assert torch.equal(objective.queue[3:], before[3:])
    F.cross_entropy(logits, labels).backward()
    assert all(p.grad is None for p in objective.key_encoder.parameters())
    for _ in range(3):  # the queue wraps around
        objective(views(), views(seed=1))
    assert int(objective.queue_pointer) == (4 * 3) % 8


def test_bad_config_is_refused():
    with pytest.raises(ValueError, match="method"):
        ClipContrast(model(), ContrastConfig(method="byol"))
