"""PG2 GFVs: the store (util/gfv_store.py), export and decode through test.py (models/pg2_gfv.py).

Nets are freshly initialised and saved as a run's checkpoints (no training needed): the assertions are about
files, shapes, names, statistics and exact equality of decode(export) with the normal test output.
"""
from __future__ import annotations

import gc
import hashlib
import importlib.util
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from data import create_dataloader, create_dataset
from data.annotations import read_pairs
from models import create_model
from models.networks.pg2_generator_stage1 import PG2GeneratorStage1
from models.networks.pg2_generator_stage2 import PG2GeneratorStage2
from models.pg2_options import pg2_geometry
from options.test_options import TestOptions
from util.checkpoint import save_weights
from util.distributed import build_context
from util.gfv_store import GFVStore, GFVStoreWriter, bytes_per_file, gfv_file_name
from util.io import InputError

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("pose_transfer_test_script_gfv", REPO / "test.py")
test_script = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(test_script)

NGF = 8
BATCH = 4  # the tiny split has 18 pairs: not a multiple of 4
GEO = pg2_geometry("market")
G2_SHAPE = (NGF * GEO.g2_depth, 32, 16)


def save_run(ckpt: Path, name: str, ngf: int = NGF, g2_arch: str | None = "standard", seed: int = 0) -> Path:
    """Freshly initialised G1 (and G2 unless g2_arch is None) saved as <ckpt>/<name>/latest_net_*.pth."""
    torch.manual_seed(seed)
    save_weights(PG2GeneratorStage1(GEO.height, GEO.width, GEO.g1_depth, ngf), ckpt / name / "latest_net_G1.pth")
    if g2_arch is not None:
        g2 = PG2GeneratorStage2(GEO.height, GEO.width, GEO.g2_depth, ngf, GEO.g2_skips, arch=g2_arch)
        with torch.no_grad():  # non-zero biases, so that every layer matters
            for module in g2.modules():
                if isinstance(module, torch.nn.Conv2d) and module.bias is not None:
                    module.bias.uniform_(-0.05, 0.05)
        save_weights(g2, ckpt / name / "latest_net_G2.pth")
    return ckpt


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    root = tmp_path_factory.mktemp("gfv_ckpt")
    save_run(root, "s2")
    save_run(root, "s1", g2_arch=None)
    return root


def argv(root: Path, ckpt: Path, name: str, *extra: str, ngf: int = NGF) -> list[str]:
    return ["--model", "PG2", "--dataset_mode", "market", "--dataroot", str(root), "--checkpoints_dir", str(ckpt),
            "--name", name, "--gpu_ids", "-1", "--num_threads", "0", "--ngf", str(ngf), "--batchSize", str(BATCH),
            *extra]


def export(root, ckpt, folder: Path, *extra: str, name: str = "s2") -> int:
    return test_script.main(argv(root, ckpt, name, "--export_gfv", "--gfv_dir", str(folder), *extra))


@pytest.fixture(scope="module")
def exported(tiny_market_root, ckpt, tmp_path_factory):
    """The default export (g2_enc, float32, files) of the test pairs."""
    folder = tmp_path_factory.mktemp("gfv") / "g2_test"
    assert export(tiny_market_root, ckpt, folder) == 0
    return folder


def test_export_files_names_manifest_values(exported, tiny_market_root, ckpt):
    pairs = read_pairs(tiny_market_root / "market-pairs-test.csv")
    assert len(pairs) % BATCH != 0
    store = GFVStore(exported)
    assert store.rows == [(a, b, f"{Path(a).stem}_2_{Path(b).stem}_gfv.npy") for a, b in pairs]
    files = sorted(p.name for p in exported.glob("*.npy"))
    assert files == sorted(r[2] for r in store.rows) and len(files) == len(pairs)
    for _, _, name in store.rows:
        array = np.load(exported / name)
        assert array.shape == G2_SHAPE and array.dtype == np.float32
        assert (exported / name).stat().st_size == bytes_per_file(G2_SHAPE, "float32")
    values = np.stack([store[i] for i in range(len(store))]).astype(np.float64)  # (N, C, H, W)
    assert values.min() >= 0 and values.max() > 0  # e_R ends with a ReLU
    per_channel = values.transpose(1, 0, 2, 3).reshape(G2_SHAPE[0], -1)
    stats = store.meta["stats"]
    for key, expected in (("min", per_channel.min(1)), ("max", per_channel.max(1)), ("mean", per_channel.mean(1)),
                          ("std", per_channel.std(1))):
        np.testing.assert_allclose(stats[key], expected, rtol=0, atol=1e-6)
    meta = store.meta
    assert (meta["source"], meta["phase"], meta["count"], meta["dtype"], meta["pack"]) == \
        ("g2_enc", "test", 18, "float32", "files")
    assert meta["shape"] == list(G2_SHAPE) and meta["g2_arch"] == "standard"
    for net in ("G1", "G2"):
        path = ckpt / "s2" / f"latest_net_{net}.pth"
        assert meta["checkpoints"][net] == {"path": str(path), "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
                                            "class": f"PG2GeneratorStage{net[1]}", "arch": "standard"}
    pair_file = tiny_market_root / "market-pairs-test.csv"
    assert meta["pair_file_sha256"] == hashlib.sha256(pair_file.read_bytes()).hexdigest()


def test_export_is_deterministic(exported, tiny_market_root, ckpt, tmp_path):
    again = tmp_path / "again"
    assert export(tiny_market_root, ckpt, again) == 0
    names = sorted(p.name for p in exported.iterdir())
    assert names == sorted(p.name for p in again.iterdir())
    for name in names:
        assert (exported / name).read_bytes() == (again / name).read_bytes(), name


def test_float16_g1_z_legacy_and_memmap(exported, tiny_market_root, ckpt, tmp_path):
    assert bytes_per_file((384, 32, 16), "float32") == 786_560 and bytes_per_file((384, 32, 16), "float16") == 393_344
    half = tmp_path / "half"
    assert export(tiny_market_root, ckpt, half, "--gfv_dtype", "float16", "--gfv_legacy_names") == 0
    store, full = GFVStore(half), GFVStore(exported)
    assert store.rows[0][2] == f"{store.rows[0][0]}___{store.rows[0][1]}_vis.npy"
    assert store.rows[0][2] == gfv_file_name(store.rows[0][0], store.rows[0][1], legacy=True)
    assert all((half / r[2]).stat().st_size == bytes_per_file(G2_SHAPE, "float16") for r in store.rows)
    assert np.array_equal(store[3], full[3].astype(np.float16))

    packed = tmp_path / "packed"
    assert export(tiny_market_root, ckpt, packed, "--gfv_pack", "memmap") == 0
    assert sorted(p.name for p in packed.iterdir()) == ["gfv.npy", "gfv_meta.json", "manifest.csv"]
    memmap = GFVStore(packed)
    assert np.load(packed / "gfv.npy", mmap_mode="r").shape == (18, *G2_SHAPE)
    assert [r[:2] for r in memmap.rows] == [r[:2] for r in full.rows]
    assert all(np.array_equal(memmap[i], full[i]) for i in range(len(full)))
    assert memmap.meta["stats"] == full.meta["stats"]

    z = tmp_path / "z"
    assert export(tiny_market_root, ckpt, z, "--gfv_source", "g1_z", "--stage", "1", name="s1") == 0
    zs = GFVStore(z)
    assert zs.shape == (64,) and zs.meta["source"] == "g1_z" and len(zs.meta["stats"]["mean"]) == 64
    assert all((z / r[2]).stat().st_size == 384 for r in zs.rows) and zs[0].shape == (64,)


@pytest.mark.slow
def test_paper_width_file_size(tiny_market_root, tmp_path):
    save_run(tmp_path / "ck", "paper", ngf=128)
    folder = tmp_path / "gfv"
    assert test_script.main(argv(tiny_market_root, tmp_path / "ck", "paper", "--export_gfv", "--gfv_dir",
                                 str(folder), "--how_many", "2", "--batchSize", "2", ngf=128)) == 0
    store = GFVStore(folder)
    assert len(store) == 2 and store.shape == (384, 32, 16)
    assert all((folder / r[2]).stat().st_size == 786_560 for r in store.rows)


def build_model(root, ckpt, name, *extra):
    options = TestOptions()
    opt = options.parse(argv(root, ckpt, name, *extra), echo=False)
    ctx = build_context(opt.gpu_ids)
    dataset = create_dataset(opt)
    model = create_model(opt, ctx)
    model.setup()
    return model, create_dataloader(opt, ctx, dataset)


@pytest.mark.parametrize("g2_arch", ["standard", "mobile"])
def test_decode_of_export_equals_the_normal_test_output(g2_arch, tiny_market_root, ckpt, tmp_path):
    name = "s2" if g2_arch == "standard" else f"s2_{g2_arch}"
    if g2_arch != "standard":
        save_run(ckpt, name, g2_arch=g2_arch)
    arch = ["--g2_arch", g2_arch]
    folder = tmp_path / "gfv"
    assert export(tiny_market_root, ckpt, folder, *arch, name=name) == 0
    assert GFVStore(folder).meta["g2_arch"] == g2_arch
    # tensors: the model API on the exported files
    model, loader = build_model(tiny_market_root, ckpt, name, *arch)
    store = GFVStore(folder)
    batch = next(iter(loader))
    model.set_input(batch)
    model.test()
    normal = model.generated_images().clone()
    gfv = torch.from_numpy(np.stack([store[store.index_of(a, b)] for a, b in model.image_paths]))
    with torch.no_grad():
        true_gfv, _, coarse = model.encode_gfv(model.source_image, model.target_pose)
        assert torch.equal(true_gfv, gfv) and torch.equal(coarse, model.fake_g1)
        for mode in ("keep", "replace"):
            assert torch.equal(model.decode_gfv(gfv, model.source_image, model.target_pose, mode), normal)
        with pytest.raises(InputError, match=r"\(24, 32, 16\).*\(24, 16, 8\)|\(24, 16, 8\).*\(24, 32, 16\)"):
            model.decode_gfv(gfv[:, :, ::2, ::2], model.source_image, model.target_pose)
    # files: decoded images written through test.py's normal writer equal the normal test's, byte for byte
    normal_dir, decoded_dir = tmp_path / "normal", tmp_path / "decoded"
    assert test_script.main(argv(tiny_market_root, ckpt, name, *arch, "--results_dir", str(normal_dir))) == 0
    assert test_script.main(argv(tiny_market_root, ckpt, name, *arch, "--decode_gfv_dir", str(folder),
                                 "--results_dir", str(decoded_dir))) == 0
    images = sorted(p.name for p in normal_dir.glob("*_vis.jpg"))
    assert len(images) == 18 and images == sorted(p.name for p in decoded_dir.glob("*_vis.jpg"))
    assert all((normal_dir / n).read_bytes() == (decoded_dir / n).read_bytes() for n in images)
    assert (decoded_dir / "web" / "index.html").is_file()


def test_skip_modes(tiny_market_root, ckpt):
    model, loader = build_model(tiny_market_root, ckpt, "s2")
    model.set_input(next(iter(loader)))
    with torch.no_grad():
        gfv, _, _ = model.encode_gfv(model.source_image, model.target_pose)
        keep = model.decode_gfv(gfv, model.source_image, model.target_pose, "keep")
        replace = model.decode_gfv(gfv, model.source_image, model.target_pose, "replace")
        assert torch.equal(keep, replace)
        perturbed = gfv + 0.5 * torch.rand_like(gfv)
        keep_p = model.decode_gfv(perturbed, model.source_image, model.target_pose, "keep")
        replace_p = model.decode_gfv(perturbed, model.source_image, model.target_pose, "replace")
    assert not torch.equal(keep_p, replace_p)
    assert not torch.equal(keep_p, keep) and not torch.equal(replace_p, keep)


def test_g1_z_round_trip(tiny_market_root, ckpt):
    model, loader = build_model(tiny_market_root, ckpt, "s2")
    model.set_input(next(iter(loader)))
    model.test()
    with torch.no_grad():
        z, skips, coarse = model.encode_gfv(model.source_image, model.target_pose, source="g1_z")
        assert z.shape == (BATCH, 64) and len(skips) == GEO.g1_depth
        out = model.decode_gfv(z, model.source_image, model.target_pose, source="g1_z")
        assert torch.equal(out, model.fake_g2)
        moved = model.decode_gfv(z + 1.0, model.source_image, model.target_pose, source="g1_z")
    assert not torch.equal(moved, out)


def test_split_hygiene(exported, tiny_market_root, ckpt, tmp_path):
    options = TestOptions()
    train_opt = options.parse(argv(tiny_market_root, ckpt, "s2", "--export_gfv", "--phase", "train"), echo=False)
    test_opt = options.parse(argv(tiny_market_root, ckpt, "s2", "--export_gfv"), echo=False)
    assert train_opt.gfv_dir == "./results/s2/gfv_g2_enc_train" and test_opt.gfv_dir == "./results/s2/gfv_g2_enc_test"
    train_dir = tmp_path / "train"
    assert export(tiny_market_root, ckpt, train_dir, "--phase", "train") == 0
    assert GFVStore(train_dir).phase == "train"
    assert GFVStore(train_dir).rows[0][:2] == tuple(read_pairs(tiny_market_root / "market-pairs-train.csv")[0])
    # decoding a train store with the test pairs is refused
    assert test_script.main(argv(tiny_market_root, ckpt, "s2", "--decode_gfv_dir", str(train_dir),
                                 "--results_dir", str(tmp_path / "r"))) == 2
    assert not (tmp_path / "r").exists()


def test_overwrite_refusal_and_failed_run_keep_the_old_export(tiny_market_root, ckpt, tmp_path, monkeypatch, capsys):
    folder = tmp_path / "gfv"
    assert export(tiny_market_root, ckpt, folder, "--how_many", "5") == 0
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    assert export(tiny_market_root, ckpt, folder) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before

    original = GFVStoreWriter.add

    def failing_add(self, *args):
        if self.count == 9:
            raise RuntimeError("disk unplugged")
        original(self, *args)

    monkeypatch.setattr(GFVStoreWriter, "add", failing_add)
    with pytest.raises(RuntimeError, match="unplugged") as failure:
        export(tiny_market_root, ckpt, folder, "--overwrite")
    monkeypatch.undo()
    del failure  # its traceback holds the writer, whose finalizer removes the partial folder
    gc.collect()
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gfv"]  # no partial folder left behind

    assert export(tiny_market_root, ckpt, folder, "--overwrite") == 0
    assert len(GFVStore(folder)) == 18 and sorted(p.name for p in tmp_path.iterdir()) == ["gfv"]


def test_disk_room_is_checked_before_writing(tiny_market_root, ckpt, tmp_path, monkeypatch, capsys):
    free = shutil.disk_usage(tmp_path)._replace(free=1000)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: free)
    assert export(tiny_market_root, ckpt, tmp_path / "gfv") == 2
    err = capsys.readouterr().err
    assert "not enough disk space" in err and f"{bytes_per_file(G2_SHAPE, 'float32'):,} B each" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_help_states_sizes_and_bad_flag_combinations(tiny_market_root, ckpt, exported, tmp_path, capsys):
    with pytest.raises(SystemExit):
        TestOptions().parse(["--model", "PG2", "--dataset_mode", "market", "--help"])
    out = capsys.readouterr().out
    assert "786,560 B float32" in out and "216.8 GB" in out and "275,632" in out
    bad = [(["--gfv_dtype", "float16"], "--export_gfv"),
           (["--gfv_skip_mode", "replace"], "--decode_gfv_dir"),
           (["--export_gfv", "--decode_gfv_dir", str(exported)], "one at a time"),
           (["--export_gfv", "--results_dir", str(tmp_path / "x")], "--results_dir"),
           (["--export_gfv", "--gfv_pack", "memmap", "--gfv_legacy_names"], "memmap"),
           (["--export_gfv", "--stage", "1"], "--stage 2"),
           (["--decode_gfv_dir", str(exported), "--gfv_dtype", "float16"], "--export_gfv")]
    for extra, message in bad:
        assert test_script.main(argv(tiny_market_root, ckpt, "s2", *extra)) == 2, extra
        assert message in capsys.readouterr().err, extra
    # a pair that is not in the store: the message names it and the way out
    small = tmp_path / "small"
    assert export(tiny_market_root, ckpt, small, "--how_many", "2") == 0
    assert test_script.main(argv(tiny_market_root, ckpt, "s2", "--decode_gfv_dir", str(small),
                                 "--results_dir", str(tmp_path / "r"))) == 2
    err = capsys.readouterr().err
    assert "is not in the GFV store" in err and "--how_many" in err and "--phase" in err


def write_store(folder: Path, n: int = 3, shape=(2, 3, 4), pack: str = "files") -> list[np.ndarray]:
    arrays = [np.random.default_rng(i).random(shape, dtype=np.float32) for i in range(n)]
    writer = GFVStoreWriter(folder, shape, "float32", n, pack, {"source": "lgan", "phase": "train"}, overwrite=False)
    for i, a in enumerate(arrays):
        writer.add(f"a{i}.jpg", f"b{i}.jpg", a)
    writer.close()
    return arrays


def test_store_reader_errors(tmp_path):
    folder = tmp_path / "s"
    arrays = write_store(folder)
    store = GFVStore(folder)
    assert store.index_of("a2.jpg", "b2.jpg") == 2 and np.array_equal(store[2], arrays[2])
    with pytest.raises(InputError, match=r"\(a9.jpg, b9.jpg\).*" + str(folder)):
        store.index_of("a9.jpg", "b9.jpg")
    with pytest.raises(InputError, match=r"\(2, 3, 5\).*\(2, 3, 4\)"):
        writer = GFVStoreWriter(tmp_path / "t", (2, 3, 4), "float32", 2, "files", {"source": "x", "phase": "y"}, False)
        writer.add("a", "b", np.zeros((2, 3, 5), np.float32))
    np.save(folder / "a1_2_b1_gfv.npy", np.zeros((2, 3, 5), np.float32))
    with pytest.raises(InputError, match="a1_2_b1_gfv.npy"):
        GFVStore(folder)[1]
    (folder / "a0_2_b0_gfv.npy").unlink()
    with pytest.raises(InputError, match="a0_2_b0_gfv.npy is missing"):
        GFVStore(folder)
    manifest = folder / "manifest.csv"
    manifest.write_text("\n".join(manifest.read_text().splitlines()[:-1]) + "\n")
    with pytest.raises(InputError, match="2 rows.*count 3"):
        GFVStore(folder)
    (folder / "gfv_meta.json").write_text("{not json")
    with pytest.raises(InputError, match="gfv_meta.json is not valid JSON"):
        GFVStore(folder)
    manifest.unlink()
    (folder / "gfv_meta.json").unlink()
    with pytest.raises(InputError, match="gfv_meta.json is missing"):
        GFVStore(folder)
    with pytest.raises(InputError, match="expected 3"):
        writer = GFVStoreWriter(tmp_path / "u", (2,), "float32", 3, "memmap", {"source": "x", "phase": "y"}, False)
        writer.add("a", "b", np.zeros(2, np.float32))
        writer.close()
    assert not (tmp_path / "u").exists()


def test_decode_of_a_latent_gan_store(exported, tiny_market_root, ckpt, tmp_path):
    # a store as the latent GAN writes it (source lgan, gfv_source g2_enc): decoded in G2's encoder space
    true = GFVStore(exported)
    folder = tmp_path / "lgan"
    writer = GFVStoreWriter(folder, true.shape, "float32", len(true), "files",
                            {"source": "lgan", "gfv_source": "g2_enc", "phase": "test"}, overwrite=False)
    for i, (a, b, _) in enumerate(true.rows):
        writer.add(a, b, true[i] * 0.5 if i == 0 else true[i])
    writer.close()
    normal_dir, decoded_dir = tmp_path / "normal", tmp_path / "decoded"
    assert test_script.main(argv(tiny_market_root, ckpt, "s2", "--results_dir", str(normal_dir), "--how_many",
                                 "4", "--only_generated", "--image_format", "png")) == 0
    assert test_script.main(argv(tiny_market_root, ckpt, "s2", "--decode_gfv_dir", str(folder), "--results_dir",
                                 str(decoded_dir), "--how_many", "4", "--only_generated", "--image_format",
                                 "png", "--gfv_skip_mode", "replace")) == 0
    names = [f"{Path(a).stem}_2_{Path(b).stem}_vis.png" for a, b, _ in true.rows[:4]]
    same = [(normal_dir / n).read_bytes() == (decoded_dir / n).read_bytes() for n in names]
    assert same == [False, True, True, True]


def test_transfer_refuses_the_gfv_modes(tmp_path, capsys):
    """scripts.transfer writes images only: a test.py mode flag is one error, not a crash after the model ran."""
    from scripts import transfer

    photo = str(tmp_path / "photo.jpg")
    for flag in (["--export_gfv"], ["--decode_gfv_dir", str(tmp_path)]):
        argv = ["--model", "PG2", "--name", "run", "--dataset_mode", "market", "--gpu_ids", "-1",
                "--checkpoints_dir", str(tmp_path), "--source", photo, "--target", photo, "--out",
                str(tmp_path / "out.png"), *flag]
        assert transfer.main(argv) == 2
        assert f"{flag[0]} is a mode of test.py" in capsys.readouterr().err
    assert not (tmp_path / "out.png").exists()
