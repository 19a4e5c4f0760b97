"""rtau.bench measures what it says: state fed back through every timed step, W steps from the
zero state per sliding-window frame, real-looking crops, the inputs each model kind takes
(crops and/or geometry), honest derived numbers, and a variant that cannot load reported
instead of stopping the suite."""

from __future__ import annotations

import numpy as np
import pytest

from rtau.backends import Backend
from rtau.bench import (
    CROP_POOL,
    MIN_TIMED_STEPS,
    BenchError,
    StepResult,
    SuiteConfig,
    Variant,
    batch_vs_single,
    crop_pool,
    face_crops,
    geometry_pool,
    input_pool,
    machine_slug,
    parity,
    parse_int_list,
    run_suite,
    sliding_window,
    time_steps,
)
from rtau.contract import ModelContract

CONTRACT = ModelContract(crop_size=16, state_size=3, au_names=("AU01", "AU12"))
GEOMETRY_CONTRACT = ModelContract(crop_size=16, state_size=3, au_names=("AU01", "AU12"),
                                  inputs=("geometry",), geometry="landmarks-xy/1")


class CountingBackend(Backend):
    """Adds 1 to every state row per step and records what it was given."""

    name = "counting"

    def __init__(self, contract: ModelContract = CONTRACT) -> None:
        super().__init__(contract)
        self.calls: list[tuple[int, float]] = []  # (batch, first state value)
        self.images: list[np.ndarray] = []
        self.inputs: list[dict] = []

    def _run(self, inputs, state):
        self.calls.append((state.shape[0], float(state[0, 0])))
        if "image" in inputs:
            self.images.append(inputs["image"].copy())
        self.inputs.append({k: v.copy() for k, v in inputs.items()})
        return np.zeros((state.shape[0], 2), np.float32), state + 1.0

    def describe(self) -> str:
        return "counting"


def test_parse_int_list():
    assert parse_int_list("1, 8,32,8", "--batch") == (1, 8, 32)
    for bad in ("", "1,x", "0", "-1"):
        with pytest.raises(BenchError, match="--batch"):
            parse_int_list(bad, "--batch")


def test_time_steps_feeds_the_state_back_after_warmup():
    backend = CountingBackend()
    samples = time_steps(backend, batch=3, steps=5, warmup=2)
    assert samples.shape == (5,) and np.all(samples >= 0)
    assert backend.calls == [(3, float(t)) for t in range(7)]
    # consecutive steps see different crops, like video
    assert not np.array_equal(backend.images[0], backend.images[1])


def test_a_geometry_model_is_timed_on_geometry_alone():
    backend = CountingBackend(GEOMETRY_CONTRACT)
    time_steps(backend, batch=2, steps=3, warmup=1)
    assert backend.calls == [(2, float(t)) for t in range(4)]
    assert all(list(i) == ["geometry"] for i in backend.inputs), "no crops for geometry only"
    first, second = backend.inputs[0]["geometry"], backend.inputs[1]["geometry"]
    assert first.shape == (2, 956) and first.dtype == np.float32
    assert not np.array_equal(first, second)
    pool = input_pool(ModelContract(crop_size=16, state_size=3, au_names=("AU01",),
                                    inputs=("image", "geometry"), geometry="landmarks-xy/1"), 5)
    assert list(pool) == ["image", "geometry"]
    assert pool["image"].shape == (5 + CROP_POOL, 16, 16, 3)
    assert pool["geometry"].shape == (5 + CROP_POOL, 956)
    np.testing.assert_array_equal(pool["geometry"], geometry_pool(5))
    assert np.abs(pool["geometry"]).max() < 0.5


def test_a_time_budget_cuts_timing_short_but_not_below_the_minimum():
    samples = time_steps(CountingBackend(), batch=1, steps=MIN_TIMED_STEPS + 100, warmup=0,
                         max_seconds=1e-9)
    assert len(samples) == MIN_TIMED_STEPS


def test_crops_are_real_looking_and_the_pool_slices_are_contiguous():
    crops = face_crops(32, 4)
    assert crops.dtype == np.uint8 and crops.shape == (4, 32, 32, 3)
    assert crops.std() > 20 and not np.array_equal(crops[0], crops[1])
    pool = crop_pool(32, 5)
    assert pool.shape[0] == 5 + CROP_POOL
    assert pool[CROP_POOL - 1:CROP_POOL - 1 + 5].flags["C_CONTIGUOUS"]


def test_sliding_window_runs_w_steps_from_zero_per_frame():
    backend = CountingBackend()
    rows = sliding_window(backend, windows=(3,), frames=2, warmup=0)
    assert [r["window"] for r in rows] == [1, 3]
    stateful, windowed = backend.calls[:2], backend.calls[2:]
    assert stateful == [(1, 0.0), (1, 1.0)]  # one step per frame, state carried
    assert windowed == [(1, 0.0), (1, 1.0), (1, 2.0)] * 2  # W steps from zero, per frame
    assert rows[0]["x_stateful"] == 1.0 and rows[1]["steps_per_frame"] == 3


def test_the_batched_window_is_the_same_model_and_is_timed(tiny_onnx):
    """The fair alternative (W frames through the CNN in one batch, then the cell) computes
    exactly what W batch-1 steps from the zero state compute, and is reported beside them."""
    from rtau.backends.onnxruntime import OnnxRuntimeBackend
    from rtau.bench import split_step_of

    with OnnxRuntimeBackend(tiny_onnx, device="cpu") as backend:
        split = split_step_of(backend)
        assert split is not None
        crops = face_crops(backend.contract.crop_size, 5)
        state = backend.init_state(1)
        for i in range(5):
            aus, state = backend.step(crops[i:i + 1], state)
        np.testing.assert_allclose(split.window(crops, backend.contract.state_size), aus[0],
                                   atol=1e-5)
        rows = sliding_window(backend, windows=(4,), frames=2, warmup=0)
    assert rows[0]["batched_p50_ms"] is None
    assert rows[1]["batched_p50_ms"] > 0 and rows[1]["batched_x_stateful"] > 0
    assert split_step_of(CountingBackend()) is None


def test_the_batched_window_of_an_image_and_geometry_model(tiny_onnx_of):
    """With geometry beside the crops, the cell half of the split takes the geometry too and
    still equals W batch-1 steps; a geometry-only model has no CNN to batch."""
    from rtau.backends.onnxruntime import OnnxRuntimeBackend
    from rtau.bench import face_inputs_of, split_step_of

    with OnnxRuntimeBackend(tiny_onnx_of("image+geometry"), device="cpu") as backend:
        split = split_step_of(backend)
        inputs = face_inputs_of(backend.contract, 5)
        state = backend.init_state(1)
        for i in range(5):
            aus, state = backend.step(inputs["image"][i:i + 1], state,
                                      inputs["geometry"][i:i + 1])
        np.testing.assert_allclose(
            split.window(inputs["image"], backend.contract.state_size, inputs["geometry"]),
            aus[0], atol=1e-5)
    with OnnxRuntimeBackend(tiny_onnx_of("geometry"), device="cpu") as backend:
        assert split_step_of(backend) is None
        rows = sliding_window(backend, windows=(3,), frames=2, warmup=0)
    assert rows[1]["p50_ms"] > 0 and rows[1]["batched_p50_ms"] is None


def test_batch_vs_single_and_faces_per_s():
    one = StepResult("v", "onnxruntime", 1, 2.0, 3.0, 2.1, 10, 1, "d")
    eight = StepResult("v", "onnxruntime", 8, 8.0, 9.0, 8.1, 10, 1, "d")
    assert eight.faces_per_s == pytest.approx(1000.0) and eight.p50_ms_per_face == 1.0
    (row,) = batch_vs_single([one, eight])
    assert row["n_single_calls_ms"] == 16.0 and row["speedup"] == pytest.approx(2.0)
    assert eight.to_json()["p50_ms"] == 8.0


def test_parity_of_a_backend_with_itself_is_zero():
    result = parity(CountingBackend(), CountingBackend(), steps=4)
    assert result["max_abs_au_error"] == 0.0 and result["max_abs_state_error"] == 0.0
    backend = CountingBackend(GEOMETRY_CONTRACT)
    result = parity(backend, CountingBackend(GEOMETRY_CONTRACT), steps=4)
    assert result["steps"] == 4 and result["batch"] == 2
    assert [list(i) for i in backend.inputs] == [["geometry"]] * 4


@pytest.mark.parametrize("kind", ["geometry", "image+geometry"])
def test_run_suite_times_geometry_models(kind, tiny_onnx_of):
    """`rtau bench` on a geometry model: every batch timed, the sliding window, parity of the
    torch backend with ONNX Runtime on the same geometry, and the model's inputs recorded."""
    pytest.importorskip("torch")
    variants = [Variant("ort", "onnxruntime", {"device": "cpu"}),
                Variant("torch", "torch", {"device": "cpu", "threads": 1})]
    payload = run_suite(variants, tiny_onnx_of(kind), SuiteConfig(
        batches=(1, 3), steps=3, warmup=1, windows=(2,), window_frames=2, parity_steps=5))
    assert [(r["variant"], r["batch"]) for r in payload["results"]] == [
        ("ort", 1), ("ort", 3), ("torch", 1), ("torch", 3)]
    assert payload["skipped"] == []
    assert payload["model"]["inputs"] == kind.split("+")
    assert payload["model"]["geometry_size"] == 956
    assert payload["comparisons"]["parity"]["torch"]["max_abs_au_error"] < 1e-4
    windows = payload["comparisons"]["sliding_window"]["ort"]
    assert (windows[1]["batched_p50_ms"] is None) == (kind == "geometry")


def test_machine_slug():
    assert machine_slug(2, "x86_64", []) == "cpu2-x86_64"
    assert machine_slug(16, "x86_64", [{"name": "NVIDIA H100 80GB HBM3"}]) == \
        "nvidia-h100-80gb-hbm3"


def test_run_suite_skips_a_variant_that_cannot_load(tiny_onnx):
    variants = [Variant("ort", "onnxruntime", {"device": "cpu"}),
                Variant("ort-threads", "onnxruntime", {"threads": 1}, batches=(1,)),
                Variant("bad-kwarg", "onnxruntime", {"no_such_option": 1}),
                Variant("unknown", "nope")]
    payload = run_suite(variants, tiny_onnx, SuiteConfig(batches=(1, 2), steps=3, warmup=1,
                                                         windows=(), parity_steps=3))
    assert [(r["variant"], r["batch"]) for r in payload["results"]] == [
        ("ort", 1), ("ort", 2), ("ort-threads", 1)]
    assert [s["variant"] for s in payload["skipped"]] == ["bad-kwarg", "unknown"]
    assert "no_such_option" in payload["skipped"][0]["reason"]
    # the reference itself is not compared; the same model on ONNX Runtime again matches it
    assert list(payload["comparisons"]["parity"]) == ["ort-threads"]
    assert payload["comparisons"]["parity"]["ort-threads"]["max_abs_au_error"] < 1e-5
    assert payload["config"]["variants"][0]["batches"] == [1, 2]
    assert "load_average_after" in payload["machine"]
