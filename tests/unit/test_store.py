import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from ecg_pipeline.io import store as store_module
from ecg_pipeline.io.atomic import remove_dead_temp_files
from ecg_pipeline.io.store import WindowStore
from ecg_pipeline.signal.windows import Windows

SHA_A = "a" * 64
SHA_B = "b" * 64


def make_row(sha, subject="S01", condition="rest", path="/in/S01_rest.acq"):
    return {
        "source_path": path,
        "subject": subject,
        "condition": condition,
        "session": None,
        "date": None,
        "sha256": sha,
        "channel": "ECG - ECG100C",
        "native_fs_hz": 1000.0,
        "duration_s": 9.0,
        "n_windows": 3,
    }


def make_windows(n=3, offset=0.0):
    rng = np.random.default_rng(int(offset))
    samples = (rng.normal(size=(n, 300)) + offset).astype(np.float32)
    return Windows(samples, np.arange(n) * 3.0, np.arange(n, dtype=np.int32), 100.0)


def test_write_then_read_back(tmp_path):
    store = WindowStore(tmp_path, "demo")
    w = make_windows()
    f = store.write_recording(make_row(SHA_A), w, "0123456789abcdef")
    assert f == tmp_path / "demo" / "subject=S01" / "condition=rest" / f"{SHA_A[:16]}.parquet"
    table = pq.read_table(f)
    assert table.schema.field("samples").type.list_size == 300
    assert table.column("window_index").to_pylist() == [0, 1, 2]
    assert set(table.column("ingest_hash").to_pylist()) == {"0123456789abcdef"}
    x, meta = store.read_windows(normalisation="none")
    np.testing.assert_array_equal(x, w.samples)
    assert meta["subject"].tolist() == ["S01"] * 3
    assert meta["source_sha256"].iloc[0] == SHA_A


def test_catalog_comes_from_footers(tmp_path):
    store = WindowStore(tmp_path, "demo")
    store.write_recording(make_row(SHA_A), make_windows(), "0" * 16)
    store.write_recording(
        make_row(SHA_B, "S02", "exercise", "/in/S02_exercise.acq"), make_windows(2), "0" * 16
    )
    cat = store.catalog()
    assert sorted(cat["subject"]) == ["S01", "S02"]
    assert set(cat["recording_id"]) == {SHA_A[:16], SHA_B[:16]}
    assert cat.set_index("subject").loc["S01", "channel"] == "ECG - ECG100C"


def test_hive_partitions_filter_reads(tmp_path):
    store = WindowStore(tmp_path, "demo")
    store.write_recording(make_row(SHA_A), make_windows(), "0" * 16)
    store.write_recording(
        make_row(SHA_B, "S02", "rest", "/in/S02_rest.acq"), make_windows(), "0" * 16
    )
    t = store.read_table(columns=["subject", "window_index"], filter=pc.field("subject") == "S02")
    assert t.num_rows == 3 and set(t.column("subject").to_pylist()) == {"S02"}


def test_normalisation_per_window_and_per_recording(tmp_path):
    store = WindowStore(tmp_path, "demo")
    store.write_recording(make_row(SHA_A), make_windows(offset=5.0), "0" * 16)
    x, _ = store.read_windows("window")
    assert np.allclose(x.min(axis=1), 0) and np.allclose(x.max(axis=1), 1)
    x, _ = store.read_windows("recording")
    assert x.min() == 0 and x.max() == 1
    assert (x.max(axis=1) < 1).sum() == 2  # only one window holds the recording's maximum
    with pytest.raises(ValueError, match="unknown normalisation"):
        store.read_windows("zscore")
    x, _ = store.read_windows("window_zscore")
    assert np.allclose(x.mean(axis=1), 0, atol=1e-5) and np.allclose(x.std(axis=1), 1, rtol=1e-4)


def test_crash_mid_write_leaves_no_partial_file_and_keeps_the_old_one(tmp_path, monkeypatch):
    store = WindowStore(tmp_path, "demo")
    good = store.write_recording(make_row(SHA_A), make_windows(), "0" * 16)
    before = good.read_bytes()

    def half_then_crash(table, path):
        path.write_bytes(b"PAR1 partial")
        raise OSError("disk full")

    monkeypatch.setattr(store_module, "_write_parquet_file", half_then_crash)
    with pytest.raises(OSError, match="disk full"):
        store.write_recording(make_row(SHA_A), make_windows(offset=9.0), "1" * 16)
    assert good.read_bytes() == before
    assert [p.name for p in good.parent.iterdir()] == [good.name]
    assert store.read_windows()[0].shape == (3, 300)


def test_a_killed_writers_temp_file_is_invisible_and_cleaned(tmp_path):
    store = WindowStore(tmp_path, "demo")
    store.write_recording(make_row(SHA_A), make_windows(), "0" * 16)
    folder = tmp_path / "demo" / "subject=S01" / "condition=rest"
    dead = folder / f".{SHA_B[:16]}.parquet.tmp-999999999"  # no such pid
    dead.write_bytes(b"PAR1 half a file")
    assert store.read_windows()[0].shape == (3, 300)  # readers skip dot files
    assert len(store.catalog()) == 1
    assert remove_dead_temp_files(tmp_path / "demo") == [dead]
    assert not dead.exists()


def test_remove_refuses_paths_outside_the_store(tmp_path):
    store = WindowStore(tmp_path / "s", "demo")
    outside = tmp_path / "recording.acq"
    outside.write_bytes(b"raw")
    with pytest.raises(ValueError, match="not inside the store"):
        store.remove([outside])
    assert outside.exists()


def test_unsafe_partition_values_refused(tmp_path):
    store = WindowStore(tmp_path, "demo")
    with pytest.raises(ValueError, match="unsafe"):
        store.file_for("../x", "rest", "0" * 16)
