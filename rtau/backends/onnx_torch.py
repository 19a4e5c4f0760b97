"""Run a contract ONNX graph with torch ops: the torch backend's model, rebuilt from the weights.

Run: `graph = OnnxTorchGraph.load("model.onnx", device="cuda", precision="fp16-cnn")`, then
`aus, state_out = graph({"image": uint8[B, S, S, 3], "geometry": float32[B, G]}, state
float32[B, H])` with torch tensors on `device`: the model's per-face inputs by name (those its
contract lists: `graph.inputs`), the recurrent state apart.

rtau never imports the training package, so the torch backend cannot rebuild `AUModel`; instead
this small interpreter executes the exported step graph node by node, with the initializers as
torch tensors on the device. It covers the operators the exporter emits (Cast, Sub, Div, Add,
Mul, Transpose, Conv, Relu, ReduceMean / GlobalAveragePool, Gemm / MatMul, Slice, Sigmoid,
Tanh, Constant; for geometry models' running baseline Min, Clip, Concat, and Shape feeding
ConstantOfShape) and a few more that equivalent exports use (Flatten, Reshape, Split, Identity,
Squeeze, Unsqueeze); any other operator is refused at load time, naming it.
Every shape-like argument (Slice bounds, Reshape shapes, Split sizes, Clip bounds) must be a
constant and is resolved at load time; a `Shape` gives the tensor's torch.Size (host metadata,
no device read) and may only feed `ConstantOfShape`, which expands its one value to that shape
without a copy. So a forward pass does no host synchronisation and can be captured in a CUDA
graph. With `precision="fp16-cnn"` the graph is first rewritten by `rtau.precision` (CNN in
FP16; the geometry encoder, recurrent cell, head and state in FP32), exactly as engines are
built; a geometry-only model has no CNN and runs FP32 only.
Needs torch and onnx; both are imported inside the functions.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rtau import contract
from rtau.backends.base import BackendError

PRECISIONS = (contract.PRECISION_FP32, contract.PRECISION_FP16_CNN)
ONNX_TO_TORCH_DTYPE = {1: "float32", 10: "float16", 2: "uint8", 3: "int8", 6: "int32",
                       7: "int64", 9: "bool", 11: "float64", 16: "bfloat16"}
"""onnx.TensorProto data type codes -> torch dtype names."""
VALUE_SUFFIX = "__rtau_value"
"""Name suffix of the constant holding a ConstantOfShape node's value."""


@dataclass(frozen=True)
class Node:
    """One node ready to run: fn(*input tensors) -> output tensor(s)."""

    op: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    fn: Callable


def _attrs(node) -> dict:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


class OnnxTorchGraph:
    """A contract step graph executed with torch ops; call it with ({name: tensor}, state)."""

    def __init__(self, nodes: list[Node], constants: dict, device, precision: str,
                 inputs: tuple[str, ...] = (contract.INPUT_IMAGE,)) -> None:
        self.nodes = nodes
        self.constants = constants
        self.device = device
        self.precision = precision
        self.inputs = inputs
        """The graph's per-face inputs (`rtau.contract.FACE_INPUTS` it has), in contract order."""

    @classmethod
    def load(cls, model_path: str | os.PathLike, device="cpu",
             precision: str = contract.PRECISION_FP32) -> OnnxTorchGraph:
        """Read the ONNX (converted to `precision`), move weights to `device`, compile nodes."""
        import onnx
        import torch
        from onnx import numpy_helper

        if precision not in PRECISIONS:
            raise BackendError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        try:
            model = onnx.load(str(Path(model_path)))
        except Exception as exc:  # protobuf raises its own DecodeError
            raise BackendError(f"{model_path} is not a readable ONNX model ({exc})") from None
        names = {i.name for i in model.graph.input}
        inputs = tuple(name for name in contract.FACE_INPUTS if name in names)
        if precision == contract.PRECISION_FP16_CNN:
            from rtau.precision import convert_cnn_to_fp16

            if contract.INPUT_IMAGE not in inputs:
                raise BackendError(f"{Path(model_path).name} takes no image, so it has no CNN to "
                                   f"run in FP16: use precision {contract.PRECISION_FP32}")
            try:
                model = convert_cnn_to_fp16(model)
            except contract.ContractError as exc:
                raise BackendError(str(exc)) from None
        arrays = {init.name: numpy_helper.to_array(init) for init in model.graph.initializer}
        for node in model.graph.node:
            if node.op_type == "Constant":
                arrays[node.output[0]] = numpy_helper.to_array(_attrs(node)["value"])
            elif node.op_type == "ConstantOfShape":
                # Its value becomes a device constant the node expands (no allocation per call).
                value = _attrs(node).get("value")
                arrays[node.output[0] + VALUE_SUFFIX] = (
                    np.zeros(1, np.float32) if value is None else numpy_helper.to_array(value))
        _check_shape_consumers(model.graph)
        device = torch.device(device)
        constants = {name: torch.from_numpy(np.array(value)).to(device)
                     for name, value in arrays.items()}
        nodes = []
        for node in model.graph.node:
            if node.op_type == "Constant":
                continue
            builder = _OPS.get(node.op_type)
            if builder is None:
                raise BackendError(f"the torch backend cannot run ONNX operator {node.op_type!r} "
                                   f"(node {node.name or node.output[0]}); use onnxruntime")
            fn = builder(_attrs(node), [arrays.get(name) for name in node.input])
            node_inputs = tuple(node.input)
            if node.op_type == "ConstantOfShape":
                node_inputs += (node.output[0] + VALUE_SUFFIX,)
            nodes.append(Node(node.op_type, node_inputs, tuple(node.output), fn))
        return cls(nodes, constants, device, precision, inputs)

    def __call__(self, inputs: dict, state):
        """inputs {name: tensor} for every name in `self.inputs` (image uint8[B, S, S, 3],
        geometry float32[B, G]), state float32[B, H] -> (aus float32[B, K], state_out
        float32[B, H])."""
        values = dict(self.constants)
        for name in self.inputs:
            values[name] = inputs[name]
        values[contract.INPUT_STATE] = state
        for node in self.nodes:
            result = node.fn(*(values[name] for name in node.inputs if name))
            if len(node.outputs) == 1:
                values[node.outputs[0]] = result
            else:
                values.update(zip(node.outputs, result, strict=True))
        return values[contract.OUTPUT_AUS], values[contract.OUTPUT_STATE]


def _check_shape_consumers(graph) -> None:
    """A Shape output is host metadata here (torch.Size), not a tensor: refuse at load time any
    graph where it feeds an operator other than ConstantOfShape."""
    shapes = {out for node in graph.node if node.op_type == "Shape" for out in node.output}
    for node in graph.node:
        used = shapes.intersection(node.input)
        if used and node.op_type != "ConstantOfShape":
            raise BackendError(f"the torch backend runs Shape only into ConstantOfShape, but "
                               f"{node.op_type} node {node.name or node.output[0]} uses it; "
                               "use onnxruntime")
    outputs = {o.name for o in graph.output}
    if shapes & outputs:
        raise BackendError("the torch backend cannot return a Shape as a graph output")


def _static(value, what: str) -> np.ndarray:
    if value is None:
        raise BackendError(f"the torch backend needs a constant {what} (the graph computes it)")
    return np.asarray(value)


def _cast(attrs, _):
    import torch

    dtype = getattr(torch, ONNX_TO_TORCH_DTYPE[attrs["to"]])
    return lambda x: x.to(dtype)


def _binary(name):
    def build(attrs, _):
        import torch

        return getattr(torch, name)

    return build


def _unary(name):
    def build(attrs, _):
        import torch

        return getattr(torch, name)

    return build


def _transpose(attrs, _):
    perm = tuple(attrs["perm"])
    return lambda x: x.permute(perm)


def _conv(attrs, _):
    import torch.nn.functional as F

    if attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
        raise BackendError("the torch backend supports Conv with explicit pads only")
    kernel = attrs.get("kernel_shape", [])
    if len(kernel) != 2:
        raise BackendError(f"the torch backend supports 2-D Conv only, got kernel {kernel}")
    pads = list(attrs.get("pads", [0, 0, 0, 0]))
    strides = tuple(attrs.get("strides", [1, 1]))
    dilations = tuple(attrs.get("dilations", [1, 1]))
    groups = int(attrs.get("group", 1))
    symmetric = pads[:2] == pads[2:]

    def conv(x, w, b=None):
        if not symmetric:
            # ONNX pads are (top, left, bottom, right); F.pad wants (left, right, top, bottom).
            x = F.pad(x, (pads[1], pads[3], pads[0], pads[2]))
        return F.conv2d(x, w, b, strides, tuple(pads[:2]) if symmetric else 0, dilations, groups)

    return conv


def _reduce_mean(attrs, inputs):
    axes = attrs.get("axes")
    if axes is None and len(inputs) > 1:
        axes = _static(inputs[1], "ReduceMean axes").tolist()
    keep = bool(attrs.get("keepdims", 1))
    dims = tuple(int(a) for a in axes) if axes is not None else None
    return lambda x, *_: x.mean(dim=dims, keepdim=keep) if dims else x.mean()


def _global_average_pool(attrs, _):
    return lambda x: x.mean(dim=(2, 3), keepdim=True)


def _gemm(attrs, _):
    import torch
    import torch.nn.functional as F

    alpha, beta = float(attrs.get("alpha", 1.0)), float(attrs.get("beta", 1.0))
    trans_a, trans_b = int(attrs.get("transA", 0)), int(attrs.get("transB", 0))

    if alpha == 1.0 and beta == 1.0 and not trans_a and trans_b:
        return lambda a, b, c=None: F.linear(a, b, c)

    def gemm(a, b, c=None):
        a = a.t() if trans_a else a
        b = b.t() if trans_b else b
        y = torch.matmul(a, b) * alpha
        return y if c is None else y + beta * c

    return gemm


def _matmul(attrs, _):
    import torch

    return torch.matmul


def _slice(attrs, inputs):
    starts = _static(inputs[1], "Slice start").tolist()
    ends = _static(inputs[2], "Slice end").tolist()
    axes = _static(inputs[3], "Slice axes").tolist() if len(inputs) > 3 else list(
        range(len(starts)))
    steps = _static(inputs[4], "Slice steps").tolist() if len(inputs) > 4 else [1] * len(starts)
    if any(s <= 0 for s in steps):
        raise BackendError("the torch backend supports Slice with positive steps only")

    def slice_(x, *_):
        index = [slice(None)] * x.dim()
        for start, end, axis, step in zip(starts, ends, axes, steps, strict=True):
            size = x.shape[axis]
            # ONNX clamps out-of-range bounds (INT64_MAX means "to the end").
            index[axis] = slice(max(min(start, size), -size), max(min(end, size), -size), step)
        return x[tuple(index)]

    return slice_


def _clip(attrs, inputs):
    import torch

    low = attrs.get("min")
    high = attrs.get("max")
    if len(inputs) > 1 and inputs[1] is not None:
        low = float(_static(inputs[1], "Clip min"))
    if len(inputs) > 2 and inputs[2] is not None:
        high = float(_static(inputs[2], "Clip max"))
    return lambda x, *_: torch.clamp(x, low, high)


def _concat(attrs, _):
    import torch

    axis = int(attrs["axis"])
    return lambda *xs: torch.cat(xs, dim=axis)


def _flatten(attrs, _):
    axis = int(attrs.get("axis", 1))
    return lambda x: x.reshape(int(np.prod(x.shape[:axis])), -1)


def _reshape(attrs, inputs):
    shape = [int(s) for s in _static(inputs[1], "Reshape shape").tolist()]
    if attrs.get("allowzero", 0):
        raise BackendError("the torch backend does not support Reshape with allowzero")

    def reshape(x, _):
        target = [x.shape[i] if s == 0 else s for i, s in enumerate(shape)]
        return x.reshape(target)

    return reshape


def _split(attrs, inputs):
    axis = int(attrs.get("axis", 0))
    sizes = attrs.get("split")
    if sizes is None and len(inputs) > 1 and inputs[1] is not None:
        sizes = _static(inputs[1], "Split sizes").tolist()
    count = attrs.get("num_outputs")

    def split(x, *_):
        parts = sizes if sizes is not None else x.shape[axis] // int(count)
        return tuple(x.split(parts, dim=axis))

    return split


def _squeeze(attrs, inputs):
    axes = attrs.get("axes")
    if axes is None and len(inputs) > 1:
        axes = _static(inputs[1], "Squeeze axes").tolist()
    return lambda x, *_: x.squeeze(tuple(axes)) if axes else x.squeeze()


def _unsqueeze(attrs, inputs):
    axes = attrs.get("axes")
    if axes is None:
        axes = _static(inputs[1], "Unsqueeze axes").tolist()

    def unsqueeze(x, *_):
        for axis in sorted(int(a) % (x.dim() + len(axes)) for a in axes):
            x = x.unsqueeze(axis)
        return x

    return unsqueeze


def _shape(attrs, _):
    start, end = attrs.get("start", 0), attrs.get("end")

    def shape(x):
        return x.shape[start:end]

    return shape


def _constant_of_shape(attrs, _):
    # value: a one-element device tensor (see OnnxTorchGraph.load); expand makes a view.
    return lambda shape, value: value.reshape(()).expand(tuple(shape))


def _variadic(name):
    def build(attrs, _):
        import torch

        pairwise = getattr(torch, name)

        def reduce(first, *rest):
            for x in rest:
                first = pairwise(first, x)
            return first

        return reduce

    return build


def _identity(attrs, _):
    return lambda x: x


def _relu(attrs, _):
    import torch

    return torch.relu


_OPS: dict[str, Callable] = {
    "Cast": _cast, "Add": _binary("add"), "Sub": _binary("sub"), "Mul": _binary("mul"),
    "Div": _binary("div"), "Transpose": _transpose, "Conv": _conv, "Relu": _relu,
    "ReduceMean": _reduce_mean, "GlobalAveragePool": _global_average_pool, "Gemm": _gemm,
    "MatMul": _matmul, "Slice": _slice, "Sigmoid": _unary("sigmoid"), "Tanh": _unary("tanh"),
    "Clip": _clip, "Concat": _concat, "Flatten": _flatten, "Reshape": _reshape, "Split": _split,
    "Squeeze": _squeeze, "Unsqueeze": _unsqueeze, "Identity": _identity,
    "Min": _variadic("minimum"), "Max": _variadic("maximum"), "Shape": _shape,
    "ConstantOfShape": _constant_of_shape,
}
