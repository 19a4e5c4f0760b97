"""Rewrite an FP32 contract ONNX into the engine layout: FP16 CNN, FP32 recurrent cell.

TensorRT 11 and TensorRT-RTX build strongly typed networks, so the precision of every layer must
already be in the ONNX. `convert_cnn_to_fp16` takes the FP32 model that `python -m train export`
ships (the fastest on ONNX Runtime CPU) and returns the same graph where:

- the uint8 -> float Cast at the image input produces FLOAT16, so normalisation and the whole
  CNN (convolutions, ReLUs, residual adds, the global average pool) run in FP16;
- every float initializer and Constant feeding only that region becomes FP16;
- the pooled feature (the tensor named by the `rtau.cnn_output` metadata entry) is cast back to
  FLOAT before the GRU input projection, so the cell, the head and `state`/`state_out` stay
  FP32 and rounding error does not accumulate over thousands of steps.

The region is found structurally: the ancestors of the `rtau.cnn_output` tensor, so a geometry
encoder beside the CNN (`geometry` input float32[B, G]) and the state's running baseline stay
FP32. A geometry-only model has no CNN and nothing to convert: it is refused here, and engines
build it FP32 as it is (`rtau.engine_build`). Needs the `onnx` package (extras `trt`, `rtx`,
`train`); imported lazily.
"""

from __future__ import annotations

import os
from pathlib import Path

from rtau.contract import (
    INPUT_IMAGE,
    META_PRECISION,
    PRECISION_FP16_CNN,
    PRECISION_FP32,
    ContractError,
)

META_CNN_OUTPUT = "rtau.cnn_output"
"""Metadata entry naming the CNN's pooled feature tensor, the FP16 -> FP32 boundary."""

FP32_SUFFIX = "_fp32"
FP16_SUFFIX = "_fp16"


def _import_onnx():
    try:
        import onnx
    except ImportError:
        raise ContractError(
            "converting a model to the FP16-CNN layout needs the onnx package "
            "(pip install 'rtau[rtx]' or 'rtau[trt]')"
        ) from None
    return onnx


def convert_cnn_to_fp16(model):
    """Return a new onnx.ModelProto with the CNN in FP16 and the cell in FP32 (see module doc)."""
    onnx = _import_onnx()
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.ModelProto.FromString(model.SerializeToString())
    graph = model.graph
    meta = {p.key: p.value for p in model.metadata_props}
    if meta.get(META_PRECISION, PRECISION_FP32) == PRECISION_FP16_CNN:
        return model
    boundary = meta.get(META_CNN_OUTPUT)
    if not boundary and INPUT_IMAGE not in {i.name for i in graph.input}:
        raise ContractError("the model takes no image, so it has no CNN to convert to FP16 "
                            f"(it runs {PRECISION_FP32})")
    if not boundary:
        raise ContractError(
            f"the model has no '{META_CNN_OUTPUT}' metadata entry, so its CNN region is unknown "
            "(re-export it with `python -m train export`)"
        )
    producer = {out: node for node in graph.node for out in node.output}
    if boundary not in producer:
        raise ContractError(f"the model has no tensor named {boundary!r} ('{META_CNN_OUTPUT}')")

    # Ancestors of the boundary tensor: the CNN region, normalisation included.
    region: set[int] = set()
    node_index = {id(n): i for i, n in enumerate(graph.node)}
    stack = [producer[boundary]]
    while stack:
        node = stack.pop()
        idx = node_index[id(node)]
        if idx in region:
            continue
        region.add(idx)
        for name in node.input:
            if name in producer:
                stack.append(producer[name])

    initializers = {init.name: init for init in graph.initializer}
    consumers: dict[str, set[int]] = {}
    for i, node in enumerate(graph.node):
        for name in node.input:
            consumers.setdefault(name, set()).add(i)

    for i in sorted(region):
        node = graph.node[i]
        if node.op_type == "Cast":
            for attr in node.attribute:
                if attr.name == "to" and attr.i == TensorProto.FLOAT:
                    attr.i = TensorProto.FLOAT16
        elif node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value" and attr.t.data_type == TensorProto.FLOAT:
                    value = numpy_helper.to_array(attr.t).astype("float16")
                    attr.t.CopyFrom(numpy_helper.from_array(value, attr.t.name))
        for j, name in enumerate(node.input):
            init = initializers.get(name)
            if init is None or init.data_type != TensorProto.FLOAT:
                continue
            value = numpy_helper.to_array(init).astype("float16")
            if consumers[name] <= region:
                init.CopyFrom(numpy_helper.from_array(value, name))
            else:
                half_name = name + FP16_SUFFIX
                if half_name not in initializers:
                    half = numpy_helper.from_array(value, half_name)
                    graph.initializer.append(half)
                    initializers[half_name] = half
                node.input[j] = half_name

    # Cast the pooled feature back to FP32 for every consumer outside the region.
    fp32_name = boundary + FP32_SUFFIX
    for i, node in enumerate(graph.node):
        if i in region:
            continue
        for j, name in enumerate(node.input):
            if name == boundary:
                node.input[j] = fp32_name
    cast = helper.make_node("Cast", [boundary], [fp32_name], to=TensorProto.FLOAT,
                            name="rtau_cnn_to_fp32")
    insert_at = max(region) + 1
    graph.node.insert(insert_at, cast)
    # Intermediate type annotations are stale now; consumers re-infer them.
    del graph.value_info[:]

    for prop in model.metadata_props:
        if prop.key == META_PRECISION:
            prop.value = PRECISION_FP16_CNN
            break
    else:
        model.metadata_props.add(key=META_PRECISION, value=PRECISION_FP16_CNN)
    onnx.checker.check_model(model)
    return model


def convert_file(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """Convert the ONNX file `src` to the FP16-CNN layout and write it to `dst`."""
    onnx = _import_onnx()
    try:
        model = onnx.load(str(src))
    except Exception as exc:
        raise ContractError(f"{src} is not a readable ONNX model ({exc})") from None
    converted = convert_cnn_to_fp16(model)
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.tmp")
    onnx.save(converted, str(tmp))
    os.replace(tmp, dst)
    return dst
