"""util/weights.py: missing pretrained files are fetched into the torch hub cache, hash-checked, and never left
half-written; with downloads off (or offline) one error lists every missing file with its URL.

Nothing here touches the internet: files are served by http.server on 127.0.0.1 (HPT_WEIGHTS_BASE_URL points
every URL there) and the torch hub cache is a temporary TORCH_HOME."""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import http.server
import io
import socket
import threading

import pytest
import torch

import models.networks.vgg19 as vgg19_module
import util.weights as weights
from data.keypoint_rcnn import keypoint_rcnn_weights
from metrics.metrics import build_networks
from models.networks.vgg19 import VGG19Features
from util.io import InputError
from util.weights import BASE_URL_ENV, NO_DOWNLOAD_ENV, WeightSpec, ensure_weights, load_state_dict_file


class Server:
    """Serves `files` (name -> bytes) on 127.0.0.1; names in `truncate` announce more bytes than they send."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.truncate: set[str] = set()
        self.requests: list[str] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                name = self.path.lstrip("/")
                server.requests.append(name)
                body = server.files.get(name)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body) + (4096 if name in server.truncate else 0)))
                self.end_headers()
                self.wfile.write(body[: len(body) // 2] if name in server.truncate else body)
                self.wfile.flush()
                self.close_connection = True

            def log_message(self, *args) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def state_bytes(seed: int = 0) -> tuple[dict, bytes]:
    """A tiny state dict (VGG19's first conv) and its torch.save bytes."""
    generator = torch.Generator().manual_seed(seed)
    state = {"features.0.weight": torch.randn(64, 3, 3, 3, generator=generator),
             "features.0.bias": torch.randn(64, generator=generator)}
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return state, buffer.getvalue()


def spec_for(name: str, body: bytes, **changes) -> WeightSpec:
    fields = dict(filename=name, url=f"https://example.invalid/{name}", sha256=hashlib.sha256(body).hexdigest()[:8],
                  size_mib=len(body) / 2**20, purpose=f"test weights {name}", flag="--test_path",
                  random_switch="--test_random")
    fields.update(changes)
    return WeightSpec(**fields)


@pytest.fixture
def server(monkeypatch, tmp_path):
    """A local file server, downloads on, every URL pointed at it, an empty temporary hub cache."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.delenv(NO_DOWNLOAD_ENV, raising=False)
    serving = Server()
    monkeypatch.setenv(BASE_URL_ENV, serving.url)
    yield serving
    serving.close()


def cache_files() -> list[str]:
    folder = weights.hub_checkpoint_dir()
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def test_missing_file_is_fetched_into_the_hub_cache_and_loaded(server, capsys):
    state, body = state_bytes()
    spec = spec_for("tiny-00000000.pth", body)
    server.files[spec.filename] = body
    path, = ensure_weights([spec], progress=False)
    assert path == weights.hub_checkpoint_dir() / spec.filename and cache_files() == [spec.filename]
    loaded = load_state_dict_file(path)
    assert all(torch.equal(loaded[k], state[k]) for k in state)
    out = capsys.readouterr().out
    assert f"{server.url}/{spec.filename}" in out and f"{len(body) / 2**20:.1f} MiB" in out
    assert server.requests == [spec.filename]
    ensure_weights([spec])  # now present: no second request
    assert server.requests == [spec.filename]


def test_vgg19_of_the_training_losses_is_downloaded_on_first_use(server, monkeypatch):
    state, body = state_bytes(1)
    server.files[weights.VGG19.filename] = body
    monkeypatch.setattr(vgg19_module, "VGG19", dataclasses.replace(weights.VGG19, sha256=spec_for("x", body).sha256))
    vgg = VGG19Features(("relu1_1",))
    assert vgg.source == str(weights.hub_checkpoint_dir() / "vgg19-dcbb9e9d.pth")
    assert torch.equal(vgg.features[0].weight, state["features.0.weight"])
    assert server.requests == ["vgg19-dcbb9e9d.pth"]


def test_wrong_hash_is_refused_and_leaves_nothing(server):
    _, body = state_bytes()
    spec = spec_for("tiny.pth", body, sha256="00000000")
    server.files[spec.filename] = body
    with pytest.raises(InputError, match=r"wrong SHA-256.*expected \"00000000\"") as info:
        ensure_weights([spec], progress=False)
    assert f"{weights.hub_checkpoint_dir() / 'tiny.pth'} not found; URL {server.url}/tiny.pth" in str(info.value)
    assert cache_files() == []  # neither the file nor its .partial


def test_interrupted_transfer_leaves_nothing(server):
    _, body = state_bytes()
    spec = spec_for("cut.pth", body)
    server.files[spec.filename] = body
    server.truncate.add(spec.filename)  # Content-Length says more than is sent, then the connection closes
    with pytest.raises(InputError, match=r"(?s)download failed: refused, wrong SHA-256.*cut\.pth"):
        ensure_weights([spec], progress=False)
    assert server.requests == ["cut.pth"] and cache_files() == []


def test_no_download_lists_every_missing_file_in_one_error(server, monkeypatch):
    specs = [spec_for(f"w{i}.pth", b"%d" % i) for i in range(3)]
    for switch in ("flag", "env"):
        if switch == "env":
            monkeypatch.setenv(NO_DOWNLOAD_ENV, "1")
        with pytest.raises(InputError) as info:
            ensure_weights(specs, download=switch != "flag")
        message = str(info.value)
        assert message.startswith("missing pretrained weights (3 files; ") and message.count("\n") == 7
        for spec in specs:
            assert spec.filename in message and f"{server.url}/{spec.filename}" in message
        assert "downloads are off (--no_download or HPT_NO_DOWNLOAD=1)" in message
        assert "--test_path" in message and "--test_random" in message
    assert server.requests == []


def test_metrics_ask_for_alexnet_and_both_inceptions_together(server, monkeypatch):
    monkeypatch.setenv(NO_DOWNLOAD_ENV, "1")
    args = argparse.Namespace(weights_dir=None, random_weights=False, no_download=False, protocol="legacy")
    with pytest.raises(InputError) as info:
        build_networks(args, ["ssim", "lpips", "fid", "is"], torch.device("cpu"))
    message = str(info.value)
    hub = weights.hub_checkpoint_dir()
    for spec in (weights.ALEXNET, weights.INCEPTION_LEGACY, weights.INCEPTION_TF):
        assert f"{hub / spec.filename} not found; URL {server.url}/{spec.filename}" in message
    assert "also accepted: inception_v3_google-1a9a5a14.pth" in message and "--random_weights" in message
    assert message.count("\n") == 7 and server.requests == []


def test_offline_is_one_error_and_the_rest_are_not_tried(server, monkeypatch):
    with socket.socket() as probe:  # a port nobody listens on: connection refused at once
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv(BASE_URL_ENV, f"http://127.0.0.1:{port}")
    specs = [spec_for("a.pth", b"a"), spec_for("b.pth", b"b")]
    with pytest.raises(InputError) as info:
        ensure_weights(specs, progress=False)
    lines = str(info.value).splitlines()
    assert "a.pth" in lines[1] and "(download failed: no connection" in lines[2]
    assert "b.pth" in lines[3] and "(not tried after the failure above)" in lines[4]
    assert cache_files() == []


def test_present_files_need_no_request(server, tmp_path):
    _, body = state_bytes()
    spec = spec_for("here.pth", body, sha256="ffffffff")  # present files are not re-hashed
    old = spec_for("old.pth", b"", filename="new.pth", alternatives=("old.pth",))
    folder = weights.hub_checkpoint_dir()
    folder.mkdir(parents=True)
    (folder / "here.pth").write_bytes(body)
    (folder / "old.pth").write_bytes(b"legacy")
    assert ensure_weights([spec, old]) == [folder / "here.pth", folder / "old.pth"]
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "here.pth").write_bytes(body)
    assert ensure_weights([spec], explicit=tmp_path / "mine") == [tmp_path / "mine" / "here.pth"]
    assert ensure_weights([spec], explicit=tmp_path / "mine" / "here.pth") == [tmp_path / "mine" / "here.pth"]
    assert server.requests == []


def test_an_explicit_path_is_never_downloaded_into(server, tmp_path):
    _, body = state_bytes()
    spec = spec_for("tiny.pth", body)
    server.files[spec.filename] = body
    with pytest.raises(InputError, match=rf"not downloaded: an explicit path.*\n.*\n +{tmp_path / 'mine' / 'tiny.pth'} not found"):
        ensure_weights([spec], explicit=tmp_path / "mine")
    assert server.requests == [] and not (tmp_path / "mine").exists()


def test_keypoint_rcnn_error_also_offers_pose_files(server, monkeypatch):
    monkeypatch.setenv(NO_DOWNLOAD_ENV, "yes")
    with pytest.raises(InputError, match=r"(?s)keypointrcnn_resnet50_fpn_coco-fc266e95\.pth .*--pose_random_weights.*"
                                         r"pose as a file"):
        keypoint_rcnn_weights(None)
    assert server.requests == []
