"""Stage 2: labeled frames only, BPTT, learning on a toy store, exact resume, pretrained loads.

Run: `python -m pytest tests/train/test_finetune.py -q`.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from tests.train.resume import interrupted_then_resumed
from tests.train.toy_store import TOY_AUS, TOY_SIZE, make_toy_store
from train.__main__ import app
from train.data.geometry import ModelInputs
from train.data.store import StoreError
from train.finetune import (
    FinetuneConfig,
    finetune,
    freeze_batch_norm_statistics,
    load_pretrained,
    masked_loss,
    sequence_outputs,
)
from train.loop import NonFiniteLoss, config_dict
from train.model import AUModel, ModelConfig, load_checkpoint, save_checkpoint
from train.pretrain import PretrainConfig, pretrain


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("ft") / "store"
    make_toy_store(root, videos=6, frames=48)
    return root


@pytest.fixture(scope="module")
def pretrained(store, tmp_path_factory):
    out = tmp_path_factory.mktemp("pre") / "pre.pt"
    # BatchNorm, as the models these tests build: the toy AUs are brightness, which per-frame
    # GroupNorm statistics partly normalise away
    pretrain(PretrainConfig(store=(store,), out=out, steps=2, batch_size=3, clip_len=4,
                            tiny=True, norm="batch", quiet=True, device="cpu"))
    return out


def config(store, out, **changes) -> FinetuneConfig:
    base = FinetuneConfig(store=store, out=out, fold=0, num_folds=3, steps=6, batch_size=3,
                          seq_len=12, tiny=True, warmup_steps=2, lr=3e-3, cnn_lr_scale=1.0,
                          quiet=True, device="cpu", checkpoint_every=100)
    return dataclasses.replace(base, **changes)


def image_inputs(images: torch.Tensor) -> ModelInputs:
    return ModelInputs(images=images, geometry=None, present=None, state=None)


def tiny_model() -> AUModel:
    torch.manual_seed(0)
    return AUModel(ModelConfig.tiny(au_names=TOY_AUS, crop_size=TOY_SIZE)).eval()


def test_gradient_flows_only_from_labeled_frames_and_back_through_time():
    model = tiny_model()
    images = torch.rand(2, 8, TOY_SIZE, TOY_SIZE, 3) * 255
    images.requires_grad_(True)
    labels = torch.rand(2, 8, 2) * 5
    mask = torch.zeros(2, 8, 2, dtype=torch.bool)
    mask[0, 4, 0] = mask[1, 6, :] = True

    def grads(lab):
        model.zero_grad()
        images.grad = None
        loss = masked_loss(sequence_outputs(model, image_inputs(images)), lab, mask)
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in model.parameters()], images.grad.clone()

    loss, params, image_grad = grads(labels)
    changed = labels.clone()
    changed[~mask] = torch.rand(int((~mask).sum())) * 5 + 100  # unlabeled labels: garbage
    loss2, params2, image_grad2 = grads(changed)
    assert torch.equal(loss, loss2)
    assert all(torch.equal(a, b) for a, b in zip(params, params2, strict=True))
    assert torch.equal(image_grad, image_grad2)
    # BPTT: frames up to the labeled one get gradient, frames after it none
    per_frame = image_grad.abs().sum(dim=(2, 3, 4))
    assert (per_frame[0, :5] > 0).all() and (per_frame[0, 5:] == 0).all()
    assert (per_frame[1, :7] > 0).all() and (per_frame[1, 7:] == 0).all()
    changed = labels.clone()
    changed[0, 4, 0] += 1.0  # a labeled frame's label does count
    assert not torch.equal(grads(changed)[0], loss)


def _train_mode_grads(model: AUModel, images: torch.Tensor, labels, mask):
    """Parameter and image gradients of one stage 2 loss, model as finetune() trains it."""
    model.train()
    freeze_batch_norm_statistics(model)
    model.zero_grad()
    images = images.clone().requires_grad_(True)
    torch.manual_seed(0)  # the same dropout draw in every call
    masked_loss(sequence_outputs(model, image_inputs(images)), labels, mask).backward()
    return [p.grad.clone() for p in model.parameters()], images.grad


@pytest.mark.parametrize("norm", ["group", "batch"])
def test_in_train_mode_only_labeled_frames_and_their_past_send_gradient(norm):
    torch.manual_seed(0)
    model = AUModel(ModelConfig.tiny(au_names=TOY_AUS, crop_size=TOY_SIZE, norm=norm))
    images = torch.rand(3, 8, TOY_SIZE, TOY_SIZE, 3) * 255
    labels = torch.rand(3, 8, 2) * 5
    mask = torch.zeros(3, 8, 2, dtype=torch.bool)
    mask[0, 3, 0] = mask[1, 5, :] = True  # sequence 2 holds no label
    params, image_grad = _train_mode_grads(model, images, labels, mask)
    per_frame = image_grad.abs().sum(dim=(2, 3, 4))
    assert (per_frame[0, :4] > 0).all() and (per_frame[1, :6] > 0).all()
    assert (per_frame[0, 4:] == 0).all() and (per_frame[1, 6:] == 0).all()
    assert (per_frame[2] == 0).all()
    # frames that hold no label and precede none: other pixels, the very same gradient
    other = images.clone()
    other[0, 4:] = torch.rand_like(other[0, 4:]) * 255
    other[2] = torch.rand_like(other[2]) * 255
    params2, _ = _train_mode_grads(model, other, labels, mask)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(params, params2, strict=True))


def test_batch_statistics_would_couple_frames():
    # the control: BatchNorm in train mode lets an unlabeled sequence change the gradient
    torch.manual_seed(0)
    model = AUModel(ModelConfig.tiny(au_names=TOY_AUS, crop_size=TOY_SIZE, norm="batch"))
    images = torch.rand(2, 4, TOY_SIZE, TOY_SIZE, 3) * 255
    labels, mask = torch.rand(2, 4, 2) * 5, torch.zeros(2, 4, 2, dtype=torch.bool)
    mask[0, 3] = True
    model.train()
    images.requires_grad_(True)
    masked_loss(sequence_outputs(model, image_inputs(images)), labels, mask).backward()
    assert images.grad[1].abs().sum() > 0


def test_masked_loss_kinds_and_empty_mask():
    pred, labels = torch.zeros(1, 2, 1), torch.tensor([[[2.0], [0.5]]])
    mask = torch.tensor([[[True], [True]]])
    assert float(masked_loss(pred, labels, mask, "l2")) == pytest.approx((4 + 0.25) / 2)
    assert float(masked_loss(pred, labels, mask, "smooth_l1")) == pytest.approx((1.5 + 0.125) / 2)
    assert float(masked_loss(pred, labels, torch.zeros_like(mask))) == 0.0


def test_concordance_loss_counts_spread_and_mean_of_labeled_frames_only():
    from train.finetune import concordance_loss

    torch.manual_seed(0)
    labels = torch.rand(4, 16, 3) * 5
    labels[..., 2] = 1.0  # a constant AU: no concordance to measure, left out
    mask = torch.rand(4, 16, 3) > 0.3
    assert float(concordance_loss(labels.clone(), labels, mask)) == pytest.approx(0.0, abs=1e-5)
    shrunk = labels.mean() + 0.3 * (labels - labels.mean())  # correlation 1, spread too small
    assert float(concordance_loss(shrunk, labels, mask)) > 0.3
    assert float(concordance_loss(labels + 1.0, labels, mask)) > 0.05  # an offset costs too
    # what is not labeled neither counts nor gets gradient, whatever its label holds
    pred = labels.clone().requires_grad_(True)
    garbage = torch.where(mask, labels, torch.full_like(labels, float("nan")))
    loss = concordance_loss(pred + torch.randn_like(pred) * 0.1, garbage, mask)
    loss.backward()
    assert torch.isfinite(loss) and torch.count_nonzero(pred.grad[~mask]) == 0
    assert torch.count_nonzero(pred.grad[..., 2]) == 0
    nothing = concordance_loss(pred, labels, torch.zeros_like(mask))
    assert float(nothing.detach()) == 0.0 and nothing.requires_grad


def test_learns_the_toy_problem_from_pretrained_weights(store, pretrained, tmp_path):
    losses: list[float] = []
    out = finetune(config(store, tmp_path / "ft.pt", init=str(pretrained), steps=40,
                          batch_size=4, seq_len=16), on_step=lambda s, v: losses.append(v))
    early, late = sum(losses[:5]) / 5, sum(losses[-10:]) / 10
    assert late < 0.6 * early, (early, late)
    ckpt = load_checkpoint(out)
    assert ckpt.extra["init_report"]["missing"] == ["head.bias", "head.weight"]
    assert ckpt.extra["init_report"]["dropped"] == ["head.bias", "head.weight"]
    assert set(ckpt.extra["train_videos"]) == {"TOY002", "TOY003", "TOY005", "TOY006"}
    assert ckpt.extra["alignment"] == "rigid/1"


def test_weights_from_crops_of_another_alignment_are_refused(pretrained, tmp_path):
    legacy = make_toy_store(tmp_path / "legacy", videos=3, frames=12, alignment="five-point/1")
    with pytest.raises(StoreError, match=r"pre.pt was trained on rigid/1 crops, the store .*"
                                         r"holds five-point/1 crops"):
        finetune(config(legacy.root, tmp_path / "ft.pt", init=str(pretrained)))


def test_sparse_labels_use_only_the_sampled_frames(store, tmp_path):
    out = finetune(config(store, tmp_path / "sparse.pt", label_fraction=0.05, steps=2))
    ckpt = load_checkpoint(out)
    assert ckpt.extra["labeled_frames"] == round(0.05 * 4 * 48)


def test_resume_equals_uninterrupted(store, pretrained, tmp_path):
    whole = config(store, tmp_path / "whole.pt", init=str(pretrained), label_fraction=0.2)
    a, b, saved = interrupted_then_resumed(finetune, whole, tmp_path / "parts.pt", stop_at=3)
    assert saved == 4 and a.step == b.step == 6  # saved on the interrupt, atomically


def test_linear_baseline_trains_only_the_head(store, pretrained, tmp_path):
    out = finetune(config(store, tmp_path / "lin.pt", init=str(pretrained), mode="linear"))
    before, after = load_checkpoint(pretrained).model.state_dict(), load_checkpoint(out).model
    for key, value in after.state_dict().items():
        if key.startswith("head."):
            continue
        assert torch.equal(value, before[key]), key  # BN statistics included: eval mode


def test_pretrained_load_names_missing_and_unexpected_keys(pretrained, tmp_path):
    # another architecture: every differing key is named, nothing is loaded
    wide = AUModel(ModelConfig(crop_size=TOY_SIZE, width=0.25, blocks=(1, 1, 1, 1),
                               hidden_size=32, au_names=TOY_AUS))
    with pytest.raises(ValueError, match="shape mismatch: .*backbone.stem.0.weight"):
        load_pretrained(wide, pretrained)
    # a finetuned checkpoint with other AUs: only the head mismatches, and that is allowed
    other = AUModel(ModelConfig.tiny(au_names=("AU01", "AU02", "AU04"), crop_size=TOY_SIZE))
    save_checkpoint(tmp_path / "other.pt", other)
    report = load_pretrained(tiny_model(), tmp_path / "other.pt")
    assert report.mismatched == ("head.bias", "head.weight") and report.unexpected == ()
    # a deeper model than the checkpoint: the extra blocks are missing, and that is refused
    deeper = AUModel(ModelConfig(crop_size=TOY_SIZE, width=0.125, blocks=(2, 1, 1, 1),
                                 hidden_size=32, au_names=TOY_AUS))
    with pytest.raises(
        ValueError,
        match="missing: backbone.layers.4.bn1.bias.*unexpected: backbone.layers.1.shortcut",
    ):
        load_pretrained(deeper, pretrained)


def test_non_finite_loss_stops(store, tmp_path):
    with pytest.raises(NonFiniteLoss):
        finetune(config(store, tmp_path / "nan.pt", lr=float("inf"), steps=3))


def test_a_geometry_model_learns_the_toy_problem_from_landmarks(store, tmp_path):
    losses: list[float] = []
    out = finetune(config(store, tmp_path / "geo.pt", inputs="geometry", steps=60, batch_size=4,
                          seq_len=16, lr=3e-3), on_step=lambda s, v: losses.append(v))
    early, late = sum(losses[:5]) / 5, sum(losses[-10:]) / 10
    # the toy subjects start at their own random intensity, which the change from a face's
    # baseline cannot show: a smaller fall than the crop model's (measured 1.43 -> 0.91)
    assert late < 0.7 * early, (early, late)
    model = load_checkpoint(out).model
    assert model.cfg.inputs == "geometry" and model.backbone is None


def test_geometry_augmentation_turns_and_jitters_the_training_sequences(store, tmp_path,
                                                                       monkeypatch):
    import train.finetune as stage

    seen: list[torch.Tensor] = []
    real = stage.sequence_outputs

    def recording(model, inputs):  # passes through: the run is unchanged
        seen.append(inputs.geometry.clone())
        return real(model, inputs)

    monkeypatch.setattr(stage, "sequence_outputs", recording)

    def first_batch(name: str, **changes) -> torch.Tensor:
        seen.clear()
        finetune(config(store, tmp_path / f"{name}.pt", inputs="geometry", steps=2, batch_size=4,
                        seq_len=8, **changes))
        return seen[0]

    plain = first_batch("plain", augment=False, pose_jitter=6.0, geometry_noise=0.01)
    # a geometry model has no other augmentation: with both at 0 the batch is the plain one
    assert torch.equal(first_batch("none"), plain)
    noise = first_batch("noisy", geometry_noise=0.01) - plain
    assert abs(float(noise.std()) - 0.01) < 0.001 and abs(float(noise.mean())) < 0.001
    turned = first_batch("turned", pose_jitter=6.0) - plain
    # a head turn (the toy faces are nearly flat: a small change) is one turn per sequence,
    # smooth along it, and another for each sequence
    assert float(turned.abs().max()) > 0.001
    assert not torch.allclose(turned[0, 0], turned[1, 0], atol=1e-4)
    assert float((turned[:, 1:] - turned[:, :-1]).abs().max()) < 0.5 * float(turned.abs().max())
    with pytest.raises(ValueError, match="pose-jitter"):
        config(store, tmp_path / "bad.pt", pose_jitter=-1.0).check()


@pytest.mark.parametrize("prior_frames", [0, 10])
def test_training_clips_start_from_the_baseline_the_frame_would_have_live(store, prior_frames):
    from train.data.geometry import GeometrySource, batch_inputs, geometry_prior
    from train.data.store import ClipStore, read_clip

    clip_store = ClipStore(store)
    model = AUModel(dataclasses.replace(
        ModelConfig.tiny(au_names=TOY_AUS, crop_size=TOY_SIZE, inputs="geometry"),
        baseline_prior_frames=prior_frames))
    if prior_frames:
        model.set_baseline_prior(torch.from_numpy(geometry_prior(
            [(clip_store, v) for v in clip_store.video_ids])))
    source = GeometrySource.for_model(clip_store, model)
    whole = batch_inputs(model.cfg, [read_clip(clip_store, "TOY001", 0, 48)], source,
                         warm_start=False)
    late = batch_inputs(model.cfg, [read_clip(clip_store, "TOY001", 30, 18)] * 2, source,
                        cold=[False, True])
    with torch.no_grad():
        _, before = model.forward_sequence(None, None, whole.geometry[:, :30])
    hidden = model.cfg.hidden_size
    # the numpy replay of the baseline equals the model's own, frame 30 onwards
    assert torch.allclose(late.state[:1, hidden:], before[:, hidden:], atol=1e-6)
    assert torch.count_nonzero(late.state[:, :hidden]) == 0  # the GRU starts afresh
    assert torch.count_nonzero(late.state[1]) == 0  # a cold clip: a face first seen here


def test_a_prior_model_from_scratch_takes_its_prior_from_the_training_videos(store, tmp_path):
    from train.data.geometry import geometry_prior
    from train.data.store import ClipStore

    out = finetune(config(store, tmp_path / "prior.pt", inputs="geometry", steps=3,
                          batch_size=4, seq_len=8, baseline_prior_frames=10, cold_start=0.5))
    model = load_checkpoint(out).model
    clip_store = ClipStore(store)
    trained_on = load_checkpoint(out).extra["train_videos"]
    expected = geometry_prior([(clip_store, v) for v in trained_on])
    assert model.cfg.baseline_prior_frames == 10
    assert np.allclose(model.baseline_prior.numpy(), expected, atol=1e-6)
    assert np.abs(expected).max() > 0.01  # a real face shape, not zeros


def test_geometry_added_to_an_image_checkpoint_widens_the_gru_input(store, pretrained,
                                                                     tmp_path):
    both = AUModel(ModelConfig.tiny(au_names=TOY_AUS, crop_size=TOY_SIZE, norm="batch",
                                    inputs="image+geometry"))
    report = load_pretrained(both, pretrained)
    assert report.mismatched == ("gru.input_proj.weight",)
    assert all(k.startswith(("head.", "geometry_encoder.")) for k in report.missing)
    source = load_checkpoint(pretrained).model.state_dict()["gru.input_proj.weight"]
    widened = both.state_dict()["gru.input_proj.weight"]
    assert torch.equal(widened[:, : source.shape[1]], source)
    assert widened.shape[1] == source.shape[1] + both.cfg.geometry_features
    # a geometry-only model has no CNN to take the checkpoint's: refused, keys named
    alone = AUModel(ModelConfig.tiny(au_names=TOY_AUS, crop_size=TOY_SIZE, inputs="geometry"))
    with pytest.raises(ValueError, match="unexpected: backbone"):
        load_pretrained(alone, pretrained)
    out = finetune(config(store, tmp_path / "both.pt", init=str(pretrained),
                          inputs="image+geometry", steps=2))
    assert load_checkpoint(out).model.cfg.inputs == "image+geometry"


def test_geometry_added_to_an_image_checkpoint_gets_its_prior_from_the_training_videos(
        store, tmp_path):
    from train.data.geometry import geometry_prior
    from train.data.store import ClipStore

    image = AUModel(dataclasses.replace(
        ModelConfig.tiny(au_names=TOY_AUS, crop_size=TOY_SIZE), baseline_prior_frames=10))
    assert not image.has_prior  # no geometry, no prior
    save_checkpoint(tmp_path / "image.pt", image, step=1, alignment="rigid/1")
    out = finetune(config(store, tmp_path / "both.pt", init=str(tmp_path / "image.pt"),
                          inputs="image+geometry", steps=2))
    tuned = load_checkpoint(out)
    assert tuned.model.has_prior and "baseline_prior" in tuned.extra["init_report"]["missing"]
    clip_store = ClipStore(store)
    expected = geometry_prior([(clip_store, v) for v in tuned.extra["train_videos"]])
    assert np.allclose(tuned.model.baseline_prior.numpy(), expected, atol=1e-6)


def test_the_command_writes_its_flags_and_the_config_defaults_into_the_run(store, tmp_path):
    out = tmp_path / "cli.pt"
    result = CliRunner().invoke(app, [
        "finetune", "--store", str(store), "--out", str(out), "--tiny", "--steps", "2",
        "--batch-size", "2", "--seq-len", "6", "--fold", "0", "--mode", "linear", "--quiet",
        "--device", "cpu", "--no-augment",
    ])
    assert result.exit_code == 0, result.output
    expected = FinetuneConfig(store=store, out=out, tiny=True, steps=2, batch_size=2, seq_len=6,
                              fold=0, mode="linear", quiet=True, device="cpu", augment=False)
    assert load_checkpoint(out).extra["train_config"] == config_dict(expected)
