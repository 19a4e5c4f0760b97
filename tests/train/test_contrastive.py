"""The stage 1 objectives: logits / labels, same-video masking, queue, gradients.

Run: `python -m pytest tests/train/test_contrastive.py -q`.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from train.contrastive import (
    MASKED_LOGIT,
    ClipContrast,
    ContrastConfig,
    DynamicsContrast,
)
from train.data.geometry import ModelInputs
from train.model import INPUTS_GEOMETRY, AUModel, ModelConfig

S = 32


def model() -> AUModel:
    torch.manual_seed(0)
    return AUModel(ModelConfig.tiny(crop_size=S))


def views(b: int = 3, t: int = 4, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (b, t, S, S, 3), generator=g).float()


def test_simclr_pairs_each_clip_with_its_other_view():
    objective = ClipContrast(model(), ContrastConfig("simclr", temperature=0.1))
    x = views()
    logits, labels = objective(x, x.clone())
    assert logits.shape == (6, 6)
    assert labels.tolist() == [3, 4, 5, 0, 1, 2]
    # identical views: each positive logit is cos 1 / T, the largest in its row
    assert torch.allclose(logits[torch.arange(6), labels], torch.full((6,), 10.0), atol=1e-4)
    assert torch.equal(logits.argmax(1), labels)


def test_simclr_loss_backpropagates_into_cnn_and_gru_not_head():
    objective = ClipContrast(model(), ContrastConfig("simclr"))
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


def dynamics(method: str = "dynamics", **changes) -> DynamicsContrast:
    return DynamicsContrast(model(), ContrastConfig(method=method, **changes))


def image(x: torch.Tensor) -> ModelInputs:
    return ModelInputs(x, None, None, None)


def test_no_same_video_key_near_the_positive_is_a_negative():
    # clips 0 and 1: one video, overlapping (frames 10-13 and 12-15); clip 2 another video
    video = torch.tensor([7, 7, 3])
    frame = torch.tensor([[10, 11, 12, 13], [12, 13, 14, 15], [10, 11, 12, 13]])
    x = views()
    terms = dict((name, (logits, labels)) for name, _, logits, labels in
                 dynamics(margin=1)(image(x), image(x.clone()), video, frame))
    logits, labels = terms["frame"]
    assert logits.shape == (24, 12) and labels[:12].tolist() == list(range(12))
    masked = logits[:12] == MASKED_LOGIT
    # anchor clip 0 frame 12 (row 2): masked keys are video 7 frames 11..13 except itself
    assert torch.nonzero(masked[2]).flatten().tolist() == [1, 3, 4, 5]
    assert not masked[2, 6:].any()  # frames 14, 15 of the same video: deliberate negatives
    assert not masked[:, 8:][:8].any()  # the other video is never masked for video 7 anchors
    assert not masked[torch.arange(12), labels[:12]].any()  # the positive never is
    logits, labels = terms["cpc"]
    k1 = 3 * 3  # horizon 1: 3 contexts per clip of 4 frames
    assert logits.shape == (k1 + 3 * 2 + 3 * 1, 12)
    assert labels[:3].tolist() == [1, 2, 3]  # clip 0, context t -> frame t + 1
    row = logits[1] == MASKED_LOGIT  # context clip 0 t=1 predicts frame 12 (key 2)
    assert torch.nonzero(row).flatten().tolist() == [1, 3, 4, 5]


def test_identical_views_make_the_frame_positive_the_best_match():
    x = views(b=2, t=3)
    _, _, logits, labels = dynamics("frame")(image(x), image(x.clone()), torch.tensor([0, 1]),
                                             torch.arange(3).repeat(2, 1))[0]
    assert torch.equal(logits.argmax(1), labels)


def test_dynamics_terms_train_cnn_and_gru_not_head():
    objective = dynamics()
    terms = objective(image(views()), image(views(seed=1)), torch.tensor([0, 0, 1]),
                      torch.tensor([[0, 1, 2, 3], [40, 41, 42, 43], [0, 1, 2, 3]]))
    assert [t[0] for t in terms] == ["frame", "cpc"]
    sum(w * F.cross_entropy(lo, la) for _, w, lo, la in terms).backward()
    assert objective.encoder.backbone.stem[0].weight.grad.abs().sum() > 0
    assert objective.encoder.gru.hidden_proj.weight.grad.abs().sum() > 0
    assert objective.encoder.head.weight.grad is None
    assert len(dynamics("frame").predictors) == 0  # no parameters without a gradient (DDP)


def test_clip_objective_refuses_a_dynamics_method():
    with pytest.raises(ValueError, match="ClipContrast runs"):
        ClipContrast(model(), ContrastConfig(method="dynamics"))
    with pytest.raises(ValueError, match="DynamicsContrast runs"):
        DynamicsContrast(model(), ContrastConfig(method="simclr"))


def geometry_views(b: int = 3, t: int = 4, seed: int = 0) -> tuple[ModelInputs, ModelInputs]:
    """Two noisy views of the same geometry clips, each clip warm-started from a baseline."""
    g = torch.Generator().manual_seed(seed)
    cfg = ModelConfig.tiny(crop_size=S, inputs=INPUTS_GEOMETRY)
    geometry = 0.05 * torch.randn(b, t, cfg.geometry_size, generator=g)
    state = torch.zeros(b, cfg.state_size)
    state[:, cfg.hidden_size : -1] = geometry[:, 0]  # a baseline near the clip's first frame
    state[:, -1] = 30.0
    present = torch.ones(b, t)

    def view() -> ModelInputs:
        noise = 0.001 * torch.randn(geometry.shape, generator=g)
        return ModelInputs(None, geometry + noise, present, state)

    return view(), view()


def test_geometry_model_pretrains_its_encoder_and_gru():
    torch.manual_seed(0)
    encoder = AUModel(ModelConfig.tiny(crop_size=S, inputs=INPUTS_GEOMETRY))
    objective = DynamicsContrast(encoder, ContrastConfig(method="dynamics", margin=1))
    a, b = geometry_views()
    terms = objective(a, b, torch.tensor([0, 0, 1]),
                      torch.tensor([[0, 1, 2, 3], [40, 41, 42, 43], [0, 1, 2, 3]]))
    frame = dict((name, (lo, la)) for name, _, lo, la in terms)["frame"]
    assert frame[0].shape == (24, 12)
    sum(w * F.cross_entropy(lo, la) for _, w, lo, la in terms).backward()
    assert encoder.geometry_encoder.net[0].weight.grad.abs().sum() > 0
    assert encoder.gru.hidden_proj.weight.grad.abs().sum() > 0
    assert encoder.head.weight.grad is None
