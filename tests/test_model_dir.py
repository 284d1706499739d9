"""Hostile and inconsistent CAM model directories fail fast, naming the file or field."""
import json
import os
import shutil
import time

import pytest

pytest.importorskip("xcrfilter.ml.densenet")  # Keras, with the package's backend

from xcrfilter.ml.checksums import ModelFileError, file_sha256  # noqa: E402
from xcrfilter.ml.model import read_model, default_model_dir  # noqa: E402
from xcrfilter.ml.model_files import write_checksums  # noqa: E402


@pytest.fixture
def model_dir(tmp_path):
    src = default_model_dir("paper")
    dst = tmp_path / "model"
    shutil.copytree(src, dst)
    return dst


def _edit_meta(model_dir, **fields):
    meta = json.loads((model_dir / "model.json").read_text())
    meta.update(fields)
    (model_dir / "model.json").write_text(json.dumps(meta))
    write_checksums(model_dir)


def test_copy_of_shipped_model_loads(model_dir):
    model = read_model(model_dir)
    assert 0 <= model.threshold <= 1 and model.forest.n_features_in_ == 10


@pytest.mark.parametrize("line", ["{sha}  /dev/zero", "{sha}  ../model.json",
                                  "{sha}  stage1_log.csv"])
def test_sums_entries_outside_the_model_fail_fast(model_dir, line):
    sums = model_dir / "SHA256SUMS"
    sha = file_sha256(model_dir / "model.json")
    sums.write_text(sums.read_text() + line.format(sha=sha) + "\n")
    t0 = time.perf_counter()
    with pytest.raises(ModelFileError, match="not a model file"):
        read_model(model_dir)
    assert time.perf_counter() - t0 < 5.0


def test_model_file_linked_to_a_device_fails_fast(model_dir):
    (model_dir / "MODEL_CARD.md").unlink()
    os.symlink("/dev/zero", model_dir / "MODEL_CARD.md")
    t0 = time.perf_counter()
    with pytest.raises(ModelFileError, match="not a regular file"):
        read_model(model_dir)
    assert time.perf_counter() - t0 < 5.0


@pytest.mark.parametrize("field, value, match", [
    ("threshold", 5.0, "threshold"), ("threshold", -0.1, "threshold"),
    ("threshold", "0.5", "threshold"), ("energy_band_ev", [10000.0, 300.0], "energy_band_ev"),
    ("energy_band_ev", [300.0], "energy_band_ev"), ("window", 0, "window"),
    ("window", 62, "window 62"), ("class_names", ["EMPTY", "XRAY", "CR"], "class_names"),
    ("feature_set", "magic", "feature_set"), ("feature_set", "extended", "forest takes 10"),
])
def test_invalid_model_json_fields(model_dir, field, value, match):
    _edit_meta(model_dir, **{field: value})
    with pytest.raises(ModelFileError, match=match):
        read_model(model_dir)


def test_foreign_network_and_forest_name_the_file(model_dir, tmp_path):
    from xcrfilter.ml.densenet import build_densenet
    three = build_densenet(n_classes=3, initial_filters=8, growth_rate=4, layers_per_block=2)
    three.save(model_dir / "densenet.keras")
    write_checksums(model_dir)
    with pytest.raises(ModelFileError, match=r"densenet.keras: the network has 3 output"):
        read_model(model_dir)
    other = tmp_path / "other"
    shutil.copytree(default_model_dir("paper"), other)
    (other / "forest.skops").write_bytes(b"PK\x03\x04 not a forest")
    write_checksums(other)
    with pytest.raises(ModelFileError, match="forest.skops"):
        read_model(other)


def _edit_network_input(model_dir, batch_shape):
    """Rewrite the input shape in densenet.keras's layer graph (weights unchanged)."""
    import zipfile
    path = model_dir / "densenet.keras"
    with zipfile.ZipFile(path) as z:
        items = {name: z.read(name) for name in z.namelist()}
    config = json.loads(items["config.json"])
    config["config"]["layers"][0]["config"]["batch_shape"] = batch_shape
    items["config.json"] = json.dumps(config).encode()
    with zipfile.ZipFile(path, "w") as z:
        for name, data in items.items():
            z.writestr(name, data)
    write_checksums(model_dir)


@pytest.mark.parametrize("batch_shape, match", [
    ([None, 32, 32, 1], r"densenet.keras: the network takes 32x32 pixel inputs, but "
                        r"model.json says window 64"),
    ([None, None, None, 2], r"densenet.keras: the network takes 2 input channels"),
    ([None, 64, 64], r"densenet.keras: input layer .* has shape"),
])
def test_network_input_against_model_json(model_dir, batch_shape, match):
    """A network built for 32x32 tiles under a model.json saying 64 used to be scored
    without an error, and a 2-channel one failed only inside JAX."""
    _edit_network_input(model_dir, batch_shape)
    with pytest.raises(ModelFileError, match=match):
        read_model(model_dir)


def test_network_for_the_window_loads(model_dir):
    _edit_network_input(model_dir, [None, 64, 64, 1])
    assert read_model(model_dir).network.window == 64
