"""The public datasets go into the same store, read in place from ../shared/datasets."""

from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pytest
from helpers import folder_checksums

from ecg_pipeline.config import load_config
from ecg_pipeline.ingest import ingest_folder

pytestmark = pytest.mark.integration
CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def configured(name, tmp_path):
    c = load_config(CONFIGS / name)
    return c.with_overrides({"store.root": tmp_path / "store"})


@pytest.fixture(scope="module")
def datasets(acq_dir):
    path = acq_dir.parent / "datasets"
    if not path.is_dir():
        pytest.skip(f"{path} not found")
    return path


def test_dp_motion_subject_into_the_store(datasets, tmp_path):
    from ecg_pipeline.io.store import WindowStore

    folder = datasets / "dp-motion-ecg" / "data" / "06"
    before = folder_checksums(folder)
    config = configured("dp-motion.toml", tmp_path)
    summary = ingest_folder(folder, config)
    assert summary.count("written") == 15 and summary.count("rejected") == 0
    cat = summary.catalog
    assert set(cat["condition"]) == {"rest", "arms", "walk", "run", "squats"}
    assert set(cat["session"]) == {"01", "02", "03"}
    assert set(cat["subject"]) == {"06"}
    assert (cat["native_fs_hz"] == 500.0).all()
    # 06_01_chodza has a 22.5-s timestamp gap after 1.42 s: no window reaches across it.
    store = WindowStore(config.store.root, "dp-motion")
    t = store.read_table(
        columns=["start_s", "session"],
        filter=(pc.field("condition") == "walk") & (pc.field("session") == "01"),
    )
    starts = np.sort(t.column("start_s").to_numpy())
    assert starts[0] > 23.9 and np.allclose(np.diff(starts), 3.0)
    walk = cat[(cat["condition"] == "walk") & (cat["session"] == "01")].iloc[0]
    assert any("shorter than one" in w for w in walk["warnings"])
    assert folder_checksums(folder) == before


def test_ecg_id_person_into_the_store(datasets, tmp_path):
    folder = datasets / "ecg-id" / "Person_01"
    config = configured("ecg-id.toml", tmp_path)
    summary = ingest_folder(folder, config)
    cat = summary.catalog.sort_values("session", key=lambda s: s.astype(int))
    assert summary.count("rejected") == 0 and len(cat) == 20
    assert set(cat["subject"]) == {"01"} and set(cat["condition"]) == {"unknown"}
    assert (cat["channel"] == "ECG I").all()
    assert cat["date"].str.fullmatch(r"\d{4}-\d{2}-\d{2}").all()
    assert (cat["n_windows"] == 6).all()  # 20 s at 500 Hz: six whole 3-s windows
    assert not {"age", "sex"} & set(cat.columns)
