"""The model: unrolled step == forward_sequence, state matters, rows independent, checkpoints."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from tests.conftest import randomised_model
from train.model import (
    AUModel,
    ModelConfig,
    count_flops_per_frame,
    load_checkpoint,
    save_checkpoint,
)


def _frames(b: int, t: int, s: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (b, t, s, s, 3), dtype=torch.uint8, generator=g)


def test_unrolled_step_equals_forward_sequence():
    model = randomised_model(ModelConfig.tiny())
    images = _frames(3, 12, 112)
    state0 = torch.randn(3, model.cfg.hidden_size)
    with torch.no_grad():
        seq_aus, seq_state = model.forward_sequence(images, state0)
        state = state0
        steps = []
        for t in range(images.shape[1]):
            aus, state = model.step(images[:, t], state)
            steps.append(aus)
    assert torch.allclose(torch.stack(steps, 1), seq_aus, atol=1e-5, rtol=0)
    assert torch.allclose(state, seq_state, atol=1e-6, rtol=0)


def test_outputs_are_intensities_in_range():
    model = randomised_model(ModelConfig.tiny())
    with torch.no_grad():
        aus, _ = model.forward_sequence(_frames(2, 4, 112))
    assert aus.shape == (2, 4, len(model.cfg.au_names))
    assert float(aus.min()) >= 0.0 and float(aus.max()) <= 5.0


def test_state_carries_information():
    model = randomised_model(ModelConfig.tiny())
    frame = _frames(1, 1, 112, seed=1)[:, 0]
    with torch.no_grad():
        _, history_a = model.forward_sequence(_frames(1, 8, 112, seed=2))
        _, history_b = model.forward_sequence(_frames(1, 8, 112, seed=3) // 4)
        out_a, _ = model.step(frame, history_a)
        out_b, _ = model.step(frame, history_b)
    assert float((out_a - out_b).abs().max()) > 1e-3


def test_batch_rows_are_independent():
    model = randomised_model(ModelConfig.tiny())
    images = _frames(4, 5, 112, seed=4)
    with torch.no_grad():
        batched, _ = model.forward_sequence(images)
        alone, _ = model.forward_sequence(images[2:3])
        swapped = images.clone()
        swapped[0] = images[3]
        other, _ = model.forward_sequence(swapped)
    assert torch.allclose(batched[2:3], alone, atol=1e-5)
    assert torch.allclose(batched[2], other[2], atol=1e-5)


def test_default_config_cost():
    cfg = ModelConfig()
    gflops = count_flops_per_frame(cfg) / 1e9
    assert 0.35 < gflops < 0.65, gflops
    params = sum(p.numel() for p in AUModel(cfg).parameters())
    assert params < 3_000_000


def test_checkpoint_round_trip_rebuilds_from_config(tmp_path):
    cfg = ModelConfig.tiny(au_names=("AU06", "AU12"))
    model = randomised_model(cfg)
    path = tmp_path / "ckpt" / "model.pt"
    save_checkpoint(path, model, step=7, training_data="unit test")
    loaded = load_checkpoint(path)
    assert loaded.model.cfg == cfg and loaded.step == 7
    assert loaded.extra["training_data"] == "unit test"
    for key, value in model.state_dict().items():
        assert torch.equal(value, loaded.model.state_dict()[key]), key
    assert not list(tmp_path.glob("ckpt/.*tmp"))


def test_checkpoint_rejects_foreign_file(tmp_path):
    bad = tmp_path / "bad.pt"
    torch.save({"weights": torch.zeros(2)}, bad)
    with pytest.raises(ValueError, match="not an rtau checkpoint"):
        load_checkpoint(bad)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint at all")
    with pytest.raises(ValueError, match="not a readable rtau checkpoint"):
        load_checkpoint(garbage)


def test_config_rejects_unknown_keys():
    with pytest.raises(ValueError, match="unknown model config keys"):
        ModelConfig.from_dict({"crop_size": 112, "depth": 50})


@pytest.mark.parametrize("inputs,prior,fade", [("geometry", 0, 0), ("image+geometry", 0, 0),
                                               ("geometry", 20, 0), ("geometry", 0, 5)])
def test_geometry_models_unrolled_step_equals_forward_sequence(inputs, prior, fade):
    cfg = dataclasses.replace(ModelConfig.tiny(crop_size=64, inputs=inputs),
                              baseline_prior_frames=prior, absolute_fade_frames=fade)
    model = randomised_model(cfg)
    if prior or fade:
        model.set_baseline_prior(0.1 * torch.rand(956) - 0.05)
    assert cfg.state_size == cfg.hidden_size + 956 + 1
    assert (model.backbone is None) == (inputs == "geometry")
    images = _frames(3, 9, 64) if cfg.uses_image else None
    geometry = torch.rand(3, 9, 956, generator=torch.Generator().manual_seed(1)) - 0.5
    with torch.no_grad():
        seq_aus, seq_state = model.forward_sequence(images, None, geometry)
        state, steps = model.init_state(3), []
        for t in range(9):
            aus, state = model.step(None if images is None else images[:, t], state,
                                    geometry[:, t])
            steps.append(aus)
    assert torch.allclose(torch.stack(steps, 1), seq_aus, atol=1e-5, rtol=0)
    assert torch.allclose(state, seq_state, atol=1e-6, rtol=0)


def test_the_geometry_baseline_is_the_running_mean_then_forgets():
    model = AUModel(ModelConfig.tiny(inputs="geometry", crop_size=64))
    model = AUModel(dataclasses.replace(model.cfg, baseline_frames=4))
    g = torch.arange(6, dtype=torch.float32)[:, None].expand(6, 956)[None]  # frames 0, 1, ..5
    present = torch.tensor([[1.0, 1.0, 0.0, 1.0, 1.0, 1.0]])
    means, mean, count = model.baselines(g, None, present)
    # frames 0, 1 -> mean 0.5; frame 2 (no face) changes nothing; 3 -> mean of 0, 1, 3;
    # 4 -> of 0, 1, 3, 4 (count reaches 4); 5 -> forgets a quarter: 2 + (5 - 2) / 4
    expected = [0.0, 0.5, 0.5, 4 / 3, 2.0, 2.75]
    assert torch.allclose(means[0, :, 0], torch.tensor(expected))
    assert count.item() == 4.0 and torch.allclose(mean[0, 0], torch.tensor(2.75))
    _, h, tail = model.split_state(model.init_state(1))
    assert tail.shape == (1, 1) and h.shape == (1, 956)


def test_what_the_geometry_model_sees_is_the_change_from_its_baseline():
    model = randomised_model(ModelConfig.tiny(inputs="geometry", crop_size=64))
    face = torch.rand(1, 956) - 0.5
    still = face[:, None].expand(1, 30, 956)
    moved = still.clone()
    moved[:, -1, :10] += 0.05  # the last frame differs from the face's usual shape
    with torch.no_grad():
        a, _ = model.forward_sequence(None, None, still)
        b, _ = model.forward_sequence(None, None, moved)
    assert torch.equal(a[:, :-1], b[:, :-1]) and not torch.equal(a[:, -1], b[:, -1])


def test_input_kinds_are_checked_and_geometry_models_have_no_cnn_cost():
    with pytest.raises(ValueError, match="inputs must be one of"):
        ModelConfig(inputs="depth")
    assert count_flops_per_frame(ModelConfig(inputs="geometry")) == 0
    assert count_flops_per_frame(ModelConfig(inputs="image+geometry")) == count_flops_per_frame(
        ModelConfig())


def test_a_baseline_prior_reads_a_new_face_against_a_neutral_face_and_then_its_own():
    cfg = dataclasses.replace(ModelConfig.tiny(inputs="geometry", crop_size=64),
                              baseline_frames=50, baseline_prior_frames=10)
    model = AUModel(cfg)
    neutral = torch.zeros(956)
    model.set_baseline_prior(neutral)
    face = torch.full((1, 1, 956), 0.2)  # a face that holds one shape from its first frame
    means, offset, count = model.baselines(face.expand(1, 40, 956), None, None)
    seen = model.effective_baseline(means)[0, :, 0]
    # frame 1: one frame against ten of the prior; after n frames n / (n + 10) of the way
    n = torch.arange(1, 41, dtype=torch.float32)
    assert torch.allclose(seen, 0.2 * n / (n + 10), atol=1e-6)
    assert count.item() == 40.0
    # the zero state is the prior: the first frame's change is most of the face's difference
    assert seen[0] < 0.02
    # without a prior the same face is its own baseline from the first frame
    plain = AUModel(dataclasses.replace(cfg, baseline_prior_frames=0))
    means, _, _ = plain.baselines(face.expand(1, 3, 956), None, None)
    assert torch.allclose(means[0, :, 0], torch.full((3,), 0.2))
    with pytest.raises(ValueError, match="no baseline prior"):
        plain.set_baseline_prior(neutral)


def test_the_prior_travels_in_checkpoints(tmp_path):
    cfg = dataclasses.replace(ModelConfig.tiny(inputs="geometry", crop_size=64),
                              baseline_prior_frames=10)
    model = AUModel(cfg)
    prior = torch.linspace(-0.1, 0.1, 956)
    model.set_baseline_prior(prior)
    save_checkpoint(tmp_path / "p.pt", model, step=1)
    back = load_checkpoint(tmp_path / "p.pt").model
    assert back.cfg.baseline_prior_frames == 10 and torch.equal(back.baseline_prior, prior)


def test_a_faded_absolute_view_sees_a_new_face_against_the_prior_then_fades_out():
    cfg = dataclasses.replace(ModelConfig.tiny(inputs="geometry", crop_size=64),
                              absolute_fade_frames=4)
    model = AUModel(cfg)
    assert model.has_prior and not model.prior_in_baseline
    model.set_baseline_prior(torch.zeros(956))
    face = torch.full((1, 956), 0.2)
    counts = torch.tensor([[1.0], [2.0], [4.0], [9.0]])
    faded = model.faded_absolute(face.expand(4, 956), counts)
    assert torch.allclose(faded[:, 0], torch.tensor([0.15, 0.1, 0.0, 0.0]))
    # the baseline itself is the face's own, as without a prior
    means, _, _ = model.baselines(face[:, None].expand(1, 3, 956), None, None)
    assert torch.allclose(model.effective_baseline(means)[0, :, 0], torch.full((3,), 0.2))
