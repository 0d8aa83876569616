from pathlib import Path

import pytest

from ecg_pipeline.config import StudyConfig, load_config

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def test_defaults_reproduce_the_paper():
    c = StudyConfig()
    assert c.ingest.filters.highpass_hz == 0.5
    assert c.ingest.filters.mains_hz == 50.0
    assert c.ingest.windows.target_fs_hz == 100.0
    assert c.ingest.windows.window_s == 3.0
    assert c.ingest.windows.window_samples == 300
    assert c.ingest.windows.effective_hop_s == 3.0  # no overlap
    assert c.store.normalisation == "window"
    assert c.dataset.conditions == ("rest", "exercise", "deep_breathing")


def test_shipped_configs_hold_each_datasets_facts():
    demo = load_config(CONFIGS / "demo.toml")
    assert demo.dataset.format == "acq" and demo.ingest == StudyConfig().ingest
    dp = load_config(CONFIGS / "dp-motion.toml")
    assert dp.dataset.format == "dp_motion_csv"
    assert dp.dataset.condition_aliases["klud"] == "rest" and len(dp.dataset.conditions) == 5
    assert dp.ingest.quality.min_window_std == 1.0  # raw ADC counts, not mV
    assert dp.ingest.timestamps.max_gap_s == 0.1
    ecg_id = load_config(CONFIGS / "ecg-id.toml")
    assert ecg_id.ingest.channel.name == "ECG I"  # the raw lead, not "ECG I filtered"
    assert ecg_id.dataset.conditions == ("unknown",)
    hashes = {c.ingest_hash() for c in (demo, dp, ecg_id)}
    assert len(hashes) == 3 and all(len(h) == 16 for h in hashes)


def test_unknown_keys_are_an_error_naming_the_file_and_key(tmp_path):
    f = tmp_path / "typo.toml"
    f.write_text("[ingest.filters]\nhighpass_hx = 0.7\n")
    with pytest.raises(ValueError, match=r"typo\.toml.*ingest\.filters\.highpass_hx"):
        load_config(f)


def test_bad_toml_names_the_file(tmp_path):
    f = tmp_path / "broken.toml"
    f.write_text("[dataset\n")
    with pytest.raises(ValueError, match="broken.toml: not valid TOML"):
        load_config(f)


def test_sixty_hz_mains_selectable(tmp_path):
    f = tmp_path / "us.toml"
    f.write_text("[ingest.filters]\nmains_hz = 60.0\n")
    assert load_config(f).ingest.filters.mains_hz == 60.0


def test_hash_covers_ingest_only(tmp_path):
    base = StudyConfig()
    other_store = base.with_overrides({"store.normalisation": "recording"})
    assert other_store.ingest_hash() == base.ingest_hash()
    f = tmp_path / "c.toml"
    f.write_text("[ingest.windows]\nwindow_s = 5.0\n")
    assert load_config(f).ingest_hash() != base.ingest_hash()


def test_aliases_must_point_to_configured_conditions(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text('[dataset]\nconditions = ["rest"]\ncondition_aliases = { klud = "walk" }\n')
    with pytest.raises(ValueError, match="walk"):
        load_config(f)


def test_window_must_be_whole_samples(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text("[ingest.windows]\nwindow_s = 3.005\n")
    with pytest.raises(ValueError, match="whole number"):
        load_config(f)


def test_recipe_and_overrides_lay_over_the_dataset_file(tmp_path):
    paper = load_config(CONFIGS / "dp-motion.toml")
    assert not paper.training.augment.enabled and paper.training.schedule == "constant"
    tuned = load_config(CONFIGS / "dp-motion.toml", recipes=[CONFIGS / "recipes" / "tuned.toml"])
    assert tuned.training.augment.enabled and tuned.training.schedule == "cosine"
    # The dataset's own settings survive the recipe (tables merge, they are not replaced).
    assert tuned.training.split == "group" and tuned.training.group_column == "session"
    assert tuned.ingest == paper.ingest
    ablation = load_config(
        CONFIGS / "dp-motion.toml",
        recipes=[CONFIGS / "recipes" / "tuned.toml"],
        overrides=[
            "model.attention=none",
            "training.weighting=equal",
            "training.epochs=3",
            "training.augment.enabled=false",
            'training.test_groups=["02"]',
        ],
    )
    assert ablation.model.attention == "none" and ablation.training.weighting == "equal"
    assert ablation.training.epochs == 3 and not ablation.training.augment.enabled
    assert ablation.training.test_groups == ("02",)
    assert ablation.training.schedule == "cosine"


@pytest.mark.parametrize("bad", ["training.epochs", "=3", "training.epochz=3"])
def test_bad_overrides_are_named(bad):
    with pytest.raises(ValueError, match="KEY=VALUE|epochz"):
        load_config(CONFIGS / "demo.toml", overrides=[bad])
