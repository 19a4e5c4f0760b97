"""The step contract: metadata round trip and clear errors for foreign models."""

from __future__ import annotations

import json

import pytest

from rtau.contract import (
    ALIGNMENT_FIVE_POINT,
    ALIGNMENT_RIGID,
    ALIGNMENT_RIGID_STABILISED,
    GEOMETRY_LANDMARKS_XY,
    INPUT_GEOMETRY,
    INPUT_IMAGE,
    KNOWN_ALIGNMENTS,
    META_ALIGNMENT,
    META_AU_NAMES,
    META_CONTRACT,
    META_GEOMETRY,
    META_INPUTS,
    ContractError,
    ModelContract,
    io_spec,
    read_onnx_contract,
    write_json_atomic,
)


def test_metadata_round_trip():
    c = ModelContract(crop_size=96, state_size=64, au_names=("AU06", "AU12"),
                      model_version="1.2", training_data="synthetic", precision="fp16-cnn",
                      alignment=ALIGNMENT_RIGID)
    meta = c.to_metadata()
    assert meta[META_CONTRACT] == "rtau.step/2" and meta[META_ALIGNMENT] == ALIGNMENT_RIGID
    assert ModelContract.from_metadata(meta) == c


def test_models_of_every_known_alignment_read_back():
    # rigid/1 models (exported before stabilisation) keep working next to rigid/2 ones
    assert ALIGNMENT_RIGID in KNOWN_ALIGNMENTS and ALIGNMENT_RIGID_STABILISED in KNOWN_ALIGNMENTS
    for alignment in KNOWN_ALIGNMENTS:
        meta = ModelContract(112, 8, ("AU01",), alignment=alignment).to_metadata()
        assert ModelContract.from_metadata(meta).alignment == alignment


def test_version_1_models_are_five_point():
    # what the shipped default model and every model before alignment was recorded carry
    meta = ModelContract(112, 8, ("AU01",), alignment=ALIGNMENT_RIGID).to_metadata()
    meta[META_CONTRACT] = "rtau.step/1"
    del meta[META_ALIGNMENT]
    assert ModelContract.from_metadata(meta).alignment == ALIGNMENT_FIVE_POINT
    meta[META_ALIGNMENT] = ALIGNMENT_RIGID  # a version-1 model cannot claim another alignment
    assert ModelContract.from_metadata(meta).alignment == ALIGNMENT_FIVE_POINT


def test_version_2_models_must_name_a_known_alignment():
    meta = ModelContract(112, 8, ("AU01",)).to_metadata()
    meta[META_ALIGNMENT] = "eyes-only/7"
    with pytest.raises(ContractError, match=r"x.onnx declares alignment 'eyes-only/7'"):
        ModelContract.from_metadata(meta, source="x.onnx")
    del meta[META_ALIGNMENT]
    with pytest.raises(ContractError, match="declares alignment ''"):
        ModelContract.from_metadata(meta)


def test_missing_contract_entry():
    with pytest.raises(ContractError, match="not an rtau step model"):
        ModelContract.from_metadata({}, source="x.onnx")


def test_other_contract_version():
    meta = ModelContract(112, 8, ("AU01",)).to_metadata()
    meta[META_CONTRACT] = "rtau.step/99"
    with pytest.raises(ContractError, match="rtau.step/99"):
        ModelContract.from_metadata(meta)


def test_empty_au_list():
    meta = ModelContract(112, 8, ("AU01",)).to_metadata()
    meta[META_AU_NAMES] = ""
    with pytest.raises(ContractError, match="invalid rtau metadata"):
        ModelContract.from_metadata(meta)


def test_read_missing_and_corrupt_files(tmp_path):
    with pytest.raises(ContractError, match="not found"):
        read_onnx_contract(tmp_path / "none.onnx")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x00\x01 definitely not protobuf" * 10)
    with pytest.raises(ContractError, match="not a readable ONNX model"):
        read_onnx_contract(bad)


def test_write_json_atomic(tmp_path):
    target = tmp_path / "sub" / "m.json"
    write_json_atomic(target, {"a": 1})
    write_json_atomic(target, {"a": 2})
    assert json.loads(target.read_text()) == {"a": 2}
    assert [p.name for p in target.parent.iterdir()] == ["m.json"]
    assert (target.stat().st_mode & 0o777) == 0o644


def test_geometry_models_are_version_3_and_image_models_stay_version_2():
    image = ModelContract(112, 8, ("AU01",), alignment=ALIGNMENT_RIGID)
    assert image.to_metadata()[META_CONTRACT] == "rtau.step/2"  # an older rtau still reads it
    assert META_INPUTS not in image.to_metadata()
    for inputs in ((INPUT_GEOMETRY,), (INPUT_IMAGE, INPUT_GEOMETRY)):
        c = ModelContract(112, 8 + 957, ("AU01",), alignment=ALIGNMENT_RIGID, inputs=inputs,
                          geometry=GEOMETRY_LANDMARKS_XY)
        meta = c.to_metadata()
        assert meta[META_CONTRACT] == "rtau.step/3" and meta[META_INPUTS] == ",".join(inputs)
        back = ModelContract.from_metadata(meta)
        assert back == c and back.geometry_size == 956 and back.uses_geometry
        assert back.uses_image == (INPUT_IMAGE in inputs)
        assert list(io_spec(back)) == [*inputs, "state", "aus", "state_out"]
        assert io_spec(back).get("geometry", {}).get("shape") == ["B", 956]


def test_bad_inputs_and_geometry_layouts_are_refused():
    meta = ModelContract(112, 8, ("AU01",), inputs=("geometry",),
                         geometry=GEOMETRY_LANDMARKS_XY).to_metadata()
    for key, value, message in (
        (META_INPUTS, "", "non-empty subset"),
        (META_INPUTS, "geometry,image", "in that order"),
        (META_INPUTS, "image,depth", "non-empty subset"),
        (META_GEOMETRY, "mesh-3d/9", "geometry layout 'mesh-3d/9' is unknown"),
        (META_GEOMETRY, "", "must name a geometry layout"),
    ):
        bad = {**meta, key: value}
        with pytest.raises(ContractError, match=rf"^x.onnx: .*{message}"):
            ModelContract.from_metadata(bad, source="x.onnx")
    with pytest.raises(ContractError, match="must not name a geometry layout"):
        ModelContract(112, 8, ("AU01",), geometry=GEOMETRY_LANDMARKS_XY)
