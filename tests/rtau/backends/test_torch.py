"""The torch backend: the ONNX graph rebuilt as torch ops, parity with ONNX Runtime over 1,000
unrolled steps for each model kind (image, geometry, image + geometry; CPU FP32 here, the
FP16-CNN graph with CUDA graphs on a GPU), the geometry encoder kept FP32, clear refusals."""

from __future__ import annotations

import numpy as np
import pytest

from rtau.backends import BackendError, create_backend
from rtau.backends.onnx_torch import OnnxTorchGraph
from tests.conftest import TINY_KINDS
from tests.rtau.backends.cases import PARITY_STEPS, PARITY_TOLERANCE, unrolled_max_error

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")

FP16_CPU_STEPS = 100
"""FP16 convolutions are slow on a CPU; a shorter unroll still exercises the FP16 graph."""
CPU_PARITY_STEPS = {"image": PARITY_STEPS, "geometry": PARITY_STEPS, "image+geometry": 350}
"""The image and geometry kinds unroll the full 1,000 steps; image + geometry, whose parts they
cover, unrolls past the 300 frames after which the geometry baseline's count stops growing (the
graph's Min), at a third of the CNN time."""


@pytest.fixture(scope="module")
def reference(tiny_onnx):
    return create_backend("onnxruntime", tiny_onnx)


def _inputs_of(contract, face_frames, face_geometry_frames, steps):
    """(frames [steps, S, S, 3] | None, geometry [steps, G] | None) for the contract's inputs."""
    return (face_frames[:steps] if contract.uses_image else None,
            face_geometry_frames[:steps] if contract.uses_geometry else None)


@pytest.mark.parametrize("kind", TINY_KINDS)
def test_cpu_fp32_parity_over_1000_steps(kind, tiny_onnx_of, face_frames, face_geometry_frames):
    model = tiny_onnx_of(kind)
    reference = create_backend("onnxruntime", model)
    backend = create_backend("torch", model, device="cpu", threads=1)
    assert "torch (cpu, fp32, eager)" in backend.describe()
    assert backend.graph.inputs == reference.contract.inputs
    frames, geometry = _inputs_of(reference.contract, face_frames, face_geometry_frames,
                                  CPU_PARITY_STEPS[kind])
    error = unrolled_max_error(backend, reference, frames, geometry=geometry)
    assert error <= 1e-4, error


@pytest.mark.parametrize("kind", ["image", "image+geometry"])
def test_fp16_cnn_graph_on_cpu(kind, tiny_onnx_of, face_frames, face_geometry_frames):
    model = tiny_onnx_of(kind)
    reference = create_backend("onnxruntime", model)
    backend = create_backend("torch", model, device="cpu", precision="fp16-cnn", threads=1)
    assert backend.precision == "fp16-cnn"
    frames, geometry = _inputs_of(reference.contract, face_frames, face_geometry_frames,
                                  FP16_CPU_STEPS)
    error = unrolled_max_error(backend, reference, frames, geometry=geometry)
    assert error <= PARITY_TOLERANCE, error


def test_fp16_cnn_keeps_the_geometry_encoder_fp32(tiny_onnx_of):
    """Only the CNN (the ancestors of its pooled feature) turns FP16: every weight of the
    geometry encoder, the cell and the head stays FP32, and so does the running baseline."""
    graph = OnnxTorchGraph.load(tiny_onnx_of("image+geometry"), precision="fp16-cnn")
    dtypes = {name: t.dtype for name, t in graph.constants.items()}
    conv = {dtypes[n.inputs[1]] for n in graph.nodes if n.op == "Conv"}
    dense = {n.inputs[1]: dtypes[n.inputs[1]] for n in graph.nodes if n.op == "Gemm"}
    assert conv == {torch.float16}
    assert any(name.startswith("model.geometry_encoder.") for name in dense)
    assert any(name.startswith("model.gru.") for name in dense)
    assert set(dense.values()) == {torch.float32}, dense
    assert {"Clip", "Div"} <= {n.op for n in graph.nodes}  # the baseline's count and mean


def test_a_geometry_only_model_runs_fp32(tiny_onnx_of):
    model = tiny_onnx_of("geometry")
    backend = create_backend("torch", model, device="cpu")
    assert backend.precision == "fp32" and backend.graph.inputs == ("geometry",)
    with pytest.raises(BackendError, match="takes no image, so it has no CNN to run in FP16"):
        create_backend("torch", model, device="cpu", precision="fp16-cnn")


@pytest.mark.gpu
@pytest.mark.parametrize("kind", TINY_KINDS)
def test_cuda_graph_parity_over_1000_steps(kind, tiny_onnx_of, face_frames,
                                           face_geometry_frames):
    if not torch.cuda.is_available():
        pytest.skip("torch here has no CUDA")
    model = tiny_onnx_of(kind)
    reference = create_backend("onnxruntime", model)
    backend = create_backend("torch", model, device="cuda", buckets=(1, 2, 4, 8))
    contract = reference.contract
    precision = "fp16-cnn" if contract.uses_image else "fp32"
    assert f"{precision}, CUDA graphs" in backend.describe()
    captured = dict(backend._graphs)
    assert set(captured) == {1, 2, 4, 8}, "every bucket is captured at load, not on first use"
    assert set(captured[1].inputs) == set(contract.inputs)
    frames, geometry = _inputs_of(contract, face_frames, face_geometry_frames, PARITY_STEPS)
    error = unrolled_max_error(backend, reference, frames, batch=3, geometry=geometry)
    assert error <= PARITY_TOLERANCE, error
    backend.step(None if frames is None else frames[:13], backend.init_state(13),
                 None if geometry is None else geometry[:13])  # 8 + 5 (padded to 8)
    assert all(backend._graphs[b] is captured[b] for b in captured), "nothing captured later"


def _graph_with(nodes, inits, hidden=6, pool_channels=3):
    """A contract-named graph: image uint8[B,4,4,3], state float32[B,hidden] -> aus, state_out."""
    from onnx import TensorProto, helper

    inputs = [helper.make_tensor_value_info("image", TensorProto.UINT8, ["B", 4, 4, 3]),
              helper.make_tensor_value_info("state", TensorProto.FLOAT, ["B", hidden])]
    outputs = [helper.make_tensor_value_info("aus", TensorProto.FLOAT, None),
               helper.make_tensor_value_info("state_out", TensorProto.FLOAT, None)]
    graph = helper.make_graph(nodes, "ops", inputs, outputs, initializer=inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_interpreter_ops_match_onnxruntime(tmp_path):
    """Operators the exporter does not emit today but equivalent exports do, and the running
    baseline's Shape -> ConstantOfShape, variadic Min and a Clip without a maximum."""
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    consts = {"split": np.array([2, 4], np.int64), "shape": np.array([0, 6], np.int64),
              "axis1": np.array([1], np.int64), "lo": np.array(-0.5, np.float32),
              "hi": np.array(0.5, np.float32),
              "w": rng.normal(size=(6, 6)).astype(np.float32)}
    inits = [numpy_helper.from_array(v, k) for k, v in consts.items()]
    n = helper.make_node
    nodes = [
        n("Cast", ["image"], ["f"], to=TensorProto.FLOAT),
        n("Transpose", ["f"], ["nchw"], perm=[0, 3, 1, 2]),
        n("GlobalAveragePool", ["nchw"], ["pooled"]),
        n("Flatten", ["pooled"], ["flat"], axis=1),
        n("Split", ["state", "split"], ["s1", "s2"], axis=1),
        n("Concat", ["s2", "s1"], ["cat"], axis=1),
        n("Reshape", ["cat", "shape"], ["re"]),
        n("Unsqueeze", ["re", "axis1"], ["un"]),
        n("Squeeze", ["un", "axis1"], ["sq"]),
        n("Clip", ["sq", "lo", "hi"], ["cl"]),
        n("MatMul", ["cl", "w"], ["mm"]),
        n("Shape", ["mm"], ["shp"]),
        n("ConstantOfShape", ["shp"], ["quarter"],
          value=helper.make_tensor("v", TensorProto.FLOAT, [1], [0.25])),
        n("Min", ["mm", "quarter", "re"], ["mn"]),
        n("Max", ["mn", "lo"], ["mx"]),
        n("Clip", ["mx", "lo", ""], ["cl2"]),
        n("Identity", ["cl2"], ["state_out"]),
        n("Concat", ["flat", "state_out"], ["aus"], axis=1),
    ]
    path = tmp_path / "ops.onnx"
    onnx.save(_graph_with(nodes, inits), str(path))
    image = rng.integers(0, 256, (3, 4, 4, 3), dtype=np.uint8)
    state = rng.normal(size=(3, 6)).astype(np.float32)
    expected = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(
        ["aus", "state_out"], {"image": image, "state": state})
    graph = OnnxTorchGraph.load(path)
    assert graph.inputs == ("image",)
    got = graph({"image": torch.from_numpy(image)}, torch.from_numpy(state))
    for e, g in zip(expected, got, strict=True):
        np.testing.assert_allclose(g.numpy(), e, atol=1e-5)
    assert (expected[1] == 0.25).any() and (expected[1] == -0.5).any(), "Min and Max both bite"


def test_a_shape_feeding_anything_but_constant_of_shape_is_refused(tmp_path):
    from onnx import TensorProto, helper

    n = helper.make_node
    nodes = [n("Cast", ["image"], ["f"], to=TensorProto.FLOAT),
             n("Shape", ["state"], ["shp"]),
             n("Reshape", ["state", "shp"], ["state_out"]),
             n("Identity", ["state_out"], ["aus"])]
    path = tmp_path / "shape.onnx"
    onnx.save(_graph_with(nodes, []), str(path))
    with pytest.raises(BackendError, match="Shape only into ConstantOfShape, but Reshape"):
        OnnxTorchGraph.load(path)


def test_unsupported_operator_is_named(tmp_path):
    from onnx import TensorProto, helper

    nodes = [helper.make_node("Cast", ["image"], ["f"], to=TensorProto.FLOAT),
             helper.make_node("Softmax", ["state"], ["state_out"]),
             helper.make_node("Identity", ["state_out"], ["aus"])]
    path = tmp_path / "softmax.onnx"
    onnx.save(_graph_with(nodes, []), str(path))
    with pytest.raises(BackendError, match="cannot run ONNX operator 'Softmax'"):
        OnnxTorchGraph.load(path)


def test_refusals(tiny_onnx, tmp_path):
    with pytest.raises(BackendError, match="precision must be"):
        create_backend("torch", tiny_onnx, precision="int8")
    with pytest.raises(BackendError, match="device must be"):
        create_backend("torch", tiny_onnx, device="tpu")
    engine = tmp_path / "model.engine"
    engine.write_bytes(b"\0" * 64)
    with pytest.raises(BackendError, match="not model.engine"):
        create_backend("torch", engine)
    if not torch.cuda.is_available():
        with pytest.raises(BackendError, match="no CUDA GPU"):
            create_backend("torch", tiny_onnx, device="cuda")
