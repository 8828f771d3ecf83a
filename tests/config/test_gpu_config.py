"""Config rules of the GPU path: ``model.device``, and nvdec sources only with the batched GPU detector."""

from __future__ import annotations

import pytest

from streamd.config import parse_config
from streamd.daemon.service import check_device_frames
from streamd.errors import ConfigError
from tests.support import COCO_CLASSES, YOLOX_NANO, require_shared


def document(decoder: str = "opencv", **model) -> dict:
    return {"sources": [{"id": "a", "kind": "file", "url": "a.mp4"},
                        {"id": "b", "kind": "file", "url": "b.mp4", "decoder": decoder}],
            "model": {"path": str(YOLOX_NANO), "classes": str(COCO_CLASSES), **model}}


@pytest.fixture(autouse=True)
def shared_model():
    require_shared(YOLOX_NANO, COCO_CLASSES)


def test_device_defaults_to_0_and_is_read() -> None:
    assert parse_config(document()).model.device == 0
    assert parse_config(document(device=1, backend="tensorrt")).model.device == 1


def test_negative_device_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as error:
        parse_config(document(device=-1))
    assert error.value.key == "model.device"


def test_nvdec_on_onnxruntime_says_what_to_set() -> None:
    with pytest.raises(ConfigError) as error:
        parse_config(document("nvdec"))
    assert error.value.key == "sources[1].decoder"
    assert 'model.backend = "tensorrt"' in error.value.reason and "max_batch" in error.value.reason


def test_nvdec_needs_the_batched_gpu_detector() -> None:
    with pytest.raises(ConfigError) as error:
        parse_config(document("nvdec", backend="tensorrt"))
    assert error.value.key == "sources[1].decoder" and "max_batch >= 2" in error.value.reason
    config = parse_config(document("nvdec", backend="tensorrt", max_batch=4))
    assert [s.decoder for s in config.sources] == ["opencv", "nvdec"]


def test_backend_auto_is_checked_against_the_detector_built() -> None:
    """'auto' may choose ONNX Runtime on a machine without TensorRT: the daemon refuses at start-up."""
    config = parse_config(document("nvdec", backend="auto", max_batch=4))

    class HostOnly:
        pass

    class ReadsDeviceFrames:
        reads_device_frames = True

    with pytest.raises(ConfigError) as error:
        check_device_frames(config, HostOnly())
    assert error.value.key == "sources[1].decoder" and "HostOnly" in error.value.reason
    check_device_frames(config, ReadsDeviceFrames())
    check_device_frames(parse_config(document()), HostOnly())  # no nvdec source: nothing to check


def test_nvdec_preflight_failure_is_one_error_naming_the_source(tmp_path, capsys, monkeypatch) -> None:
    """Before anything starts: a missing PyNvVideoCodec (or GPU) is exit 1 with the source's id."""
    from streamd.cli import main  # noqa: PLC0415
    from streamd.errors import SourceError  # noqa: PLC0415
    from streamd.sources import nvdec  # noqa: PLC0415

    def missing():
        raise SourceError("decoder 'nvdec' needs PyNvVideoCodec, which does not import (test)")

    monkeypatch.setattr(nvdec, "import_pynvvideocodec", missing)
    config = tmp_path / "nvdec.toml"
    config.write_text(f"""
[[sources]]
id = "dock"
kind = "file"
url = "dock.mp4"
decoder = "nvdec"

[model]
path = "{YOLOX_NANO}"
classes = "{COCO_CLASSES}"
backend = "tensorrt"
max_batch = 4

[metrics]
enabled = false
""")
    assert main(["run", "--config", str(config)]) == 1
    err = capsys.readouterr().err
    assert "source dock" in err and "PyNvVideoCodec" in err
