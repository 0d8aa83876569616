"""The one typed configuration object, read from one TOML file per study or dataset.

One module on purpose (over 400 lines): every table of the configuration and every default
lives here and nowhere else, so a reader finds all of a study's settings in one place.

Defaults reproduce the DT4ECG paper's preprocessing (high-pass 0.5 Hz, mains notch, 100 Hz,
3-s windows without overlap, min-max per window) on the lab's own study (15 subjects, rest /
exercise / deep breathing). Files in ``configs/`` override what differs per dataset. Unknown keys
are an error, so a typo never silently falls back to a default.

Only the ``[ingest]`` part changes what is written to the window store; its hash
(:func:`StudyConfig.ingest_hash`) is stored with every window, so training settings never
invalidate stored windows.
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

ECG_CHANNEL_PATTERN = r"(?i)(?<![A-Za-z])(ECG|EKG)"
# Mains: 50 Hz in China (where DT4ECG was recorded) and Europe (the public datasets).
DEFAULT_MAINS_HZ = 50.0


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MarkerSettings(_Strict):
    """Splitting one long recording into its protocol phases by AcqKnowledge event markers.

    A file labelled with a subject but no condition (``S07.acq``, or a manifest row whose
    ``condition`` cell is empty) is split at the markers that name a phase: each phase runs
    from its marker (plus ``offset_s``) to the next phase marker, the end of the recording, or
    ``max_length_s``, and is stored as one recording of its condition. Labelling, not signal
    processing: the map is not part of the ``[ingest]`` hash (it changes no window of a
    per-condition file); each phase stores the hash of these settings instead.
    """

    # Marker text -> condition. A key matches a marker whose text equals it ignoring case and
    # surrounding spaces, or, failing that, as a regular expression matched against the whole
    # text ignoring case ("breath.*"). Empty: no file is split.
    phases: dict[str, str] = Field(default_factory=dict)
    # Per condition: seconds skipped after the marker (the minute of settling after "post run"),
    # and the longest stretch kept (the protocol's 3 minutes), both optional.
    offset_s: dict[str, float] = Field(default_factory=dict)
    max_length_s: dict[str, float] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _patterns_compile(self) -> MarkerSettings:
        import re

        for key in self.phases:
            if not key.strip():
                raise ValueError("an empty marker text in [dataset.markers] phases")
            try:
                re.compile(key)
            except re.error:
                pass  # not a pattern: matched as plain text only
        bad = {k: v for k, v in self.offset_s.items() if v < 0}
        bad |= {k: v for k, v in self.max_length_s.items() if v <= 0}
        if bad:
            raise ValueError(f"[dataset.markers] offset_s must be >= 0 and max_length_s > 0: {bad}")
        return self


class DatasetSettings(_Strict):
    """What the recordings are and which labels they may carry."""

    name: str = Field("demo", pattern=r"^[A-Za-z0-9_.-]+$")
    format: Literal["acq", "dp_motion_csv", "wfdb"] = "acq"
    conditions: tuple[str, ...] = ("rest", "exercise", "deep_breathing")
    # Raw label tokens found in file names, mapped to a condition (dp-motion: "klud" = rest).
    condition_aliases: dict[str, str] = Field(default_factory=dict)
    # Allowed subject ids; empty means any id matching ``subject_pattern``.
    subjects: tuple[str, ...] = ()
    subject_pattern: str = r"^[A-Za-z0-9-]+$"
    # Event-marker protocols: one file per subject, split into phases at its markers.
    markers: MarkerSettings = MarkerSettings()

    @model_validator(mode="after")
    def _aliases_point_to_conditions(self) -> DatasetSettings:
        unknown = sorted(set(self.condition_aliases.values()) - set(self.conditions))
        if unknown:
            raise ValueError(f"condition_aliases map to conditions not in `conditions`: {unknown}")
        m = self.markers
        for what, names in (
            ("phases map to", set(m.phases.values())),
            ("offset_s names", set(m.offset_s)),
            ("max_length_s names", set(m.max_length_s)),
        ):
            unknown = sorted(names - set(self.conditions))
            if unknown:
                raise ValueError(
                    f"[dataset.markers] {what} conditions not in `conditions`: {unknown}"
                )
        if len(set(self.conditions)) != len(self.conditions) or not self.conditions:
            raise ValueError("`conditions` must be a non-empty list of distinct names")
        return self


class ChannelSettings(_Strict):
    """Which channel of a multi-channel file is the ECG.

    ``index`` wins over ``name``, which wins over ``pattern``. A name shared by two channels
    (real files do this) is ambiguous and needs ``index``.
    """

    index: int | None = Field(None, ge=0)
    name: str | None = None
    pattern: str = ECG_CHANNEL_PATTERN


class FilterSettings(_Strict):
    """Zero-phase filters applied at the native rate, before resampling."""

    highpass_hz: float = Field(0.5, gt=0)
    highpass_order: int = Field(2, ge=1, le=8)
    # None: no notch (a recording without mains interference, or one already notched).
    mains_hz: float | None = Field(DEFAULT_MAINS_HZ, gt=0)
    notch_quality: float = Field(30.0, gt=0)


class WindowSettings(_Strict):
    """Resampling and windowing (the paper: 100 Hz, 3-s windows of 300 samples, no overlap)."""

    target_fs_hz: float = Field(100.0, gt=0)
    window_s: float = Field(3.0, gt=0)
    hop_s: float | None = Field(None, gt=0)  # None: equal to window_s (no overlap)

    @property
    def effective_hop_s(self) -> float:
        return self.hop_s if self.hop_s is not None else self.window_s

    @property
    def window_samples(self) -> int:
        return round(self.window_s * self.target_fs_hz)

    @model_validator(mode="after")
    def _window_is_whole_samples(self) -> WindowSettings:
        n = self.window_s * self.target_fs_hz
        if abs(n - round(n)) > 1e-9 or round(n) < 2:
            raise ValueError(f"window_s * target_fs_hz must be a whole number >= 2, got {n}")
        return self


class QualitySettings(_Strict):
    """Flat or disconnected lead detection on the raw signal."""

    # In millivolts for a channel in V, mV or µV (so an ECG stored in volts is judged like one
    # in millivolts); in the channel's own units otherwise (dp-motion-ecg: ADC counts).
    min_window_std: float = Field(0.005, ge=0)
    # More samples than this at a window's own min or max: railed or clipped (disconnected lead).
    max_extreme_fraction: float = Field(0.5, gt=0, le=1)
    # A recording with more flat windows than this fraction is refused; fewer are dropped.
    max_flat_fraction: float = Field(0.5, ge=0, le=1)
    # A channel whose QRS-band (5-25 Hz) energy is autocorrelated below this at every heart's
    # pace (median over 10-s blocks; lags rr_min_s-rr_max_s of [ingest.beats]) holds no
    # heartbeat and is refused (NoHeartbeatError). Measured by bench/heartbeat_periodicity.py
    # (results/quality/heartbeat_periodicity.json): the ECG-named channels without a heartbeat
    # in ../shared/acq-public 0.17-0.22; real ECG 0.27 (dp-motion, running), ECG-ID 0.30 and
    # the BIOPAC files 0.49 at the lowest. 0: off.
    min_heartbeat_periodicity: float = Field(0.25, ge=0, le=1)
    # NeuroKit2 ecg_quality methods run on each recording's windows and detected R peaks.
    # They cost about 3.5 ms per beat and method (NeuroKit2 builds a pandas frame per beat):
    # 1.5 s for a 180-s demo recording with both, where reading and windowing it take 0.12 s.
    # [] skips them (no score; the heartbeat test, spans and heart rate remain).
    neurokit_methods: tuple[Literal["templatematch", "averageQRS"], ...] = (
        "templatematch",
        "averageQRS",
    )
    # The windows they score per recording, evenly spread over it (0: every window). Twelve
    # 3-s windows hold about 45 beats at rest: enough for the recording's average beat and a
    # median score, at about 0.3 s per recording whatever its length (every window of a 180-s
    # recording: 1.3 s, ten times the rest of its ingest).
    neurokit_max_windows: int = Field(12, ge=0)
    # Windows whose NeuroKit2 template-match quality (mean correlation of each beat with the
    # recording's average beat) is below this are graded "poor" in the quality report.
    min_window_score: float = Field(0.6, ge=0, le=1)
    # A recording whose score (median window score) is below this is refused (LowQualityError);
    # None (TOML: "none"): never refused for it, the score is reported either way.
    min_recording_score: float | None = Field(None, ge=0, le=1)

    @field_validator("min_recording_score", mode="before")
    @classmethod
    def _none_turns_the_threshold_off(cls, value):
        return None if isinstance(value, str) and value.lower() == "none" else value


class TimestampSettings(_Strict):
    """Readers of timestamped samples (dp-motion-ecg CSVs): resample on the timestamps."""

    nominal_fs_hz: float = Field(500.0, gt=0)
    # dp-motion-ecg: delayed deliveries reach 56 ms, real losses start at 5.9 s.
    max_gap_s: float = Field(0.1, gt=0)
    min_segment_s: float = Field(1.0, ge=0)


class BeatSettings(_Strict):
    """R peaks and beat segments stored with each window (ECG-SL's input; see README).

    Peaks are detected on the filtered signal at its native rate; segments are cut from that
    signal resampled to ``segment_fs_hz`` (a QRS is 8-10 samples at 100 Hz, 20-25 at 250 Hz).
    The segment spans ``before_s`` before the R peak to ``after_s`` after it: the P wave, the
    QRS and the ST segment up to the T wave at rest.
    """

    # NeuroKit2's detector and the low-pass of its input (detection only; the stored windows
    # and segments are not low-passed), chosen by agreement with ECG-ID's annotations (F1
    # 98.8 % at 0.56 s per recording-hour; README, "R peaks"; bench/rpeaks.py) and the
    # synthetic cohort's true beats.
    method: Literal["neurokit", "pantompkins1985", "elgendi2010", "kalidas2017", "promac"] = (
        "neurokit"
    )
    detector_lowpass_hz: float | None = Field(40.0, gt=0)
    # Used on a gap-free segment whose beats from `method` do not resemble each other (median
    # correlation with their median beat below min_template_correlation); the more alike of
    # the two sets is kept and the batch report says so. On dp-motion-ecg, `neurokit` beats
    # are the most alike overall (median 0.93 over 150 recordings, `elgendi2010` 0.91) but fall
    # below 0.25 on 3 running/walking recordings where `elgendi2010` reaches 0.41-0.77, as
    # measured by bench/rpeaks.py --consistency. "none" (TOML has no null): refuse such a
    # recording instead.
    fallback_method: (
        Literal["neurokit", "pantompkins1985", "elgendi2010", "kalidas2017", "promac"] | None
    ) = "elgendi2010"

    @field_validator("fallback_method", mode="before")
    @classmethod
    def _none_turns_the_fallback_off(cls, value):
        return None if isinstance(value, str) and value.lower() == "none" else value

    # Chosen on validation at the evaluation rows' own length (50 epochs; README, "The segment
    # rate"): 250 Hz against 100 Hz on ECG-ID last_record (identity 97.6 against 96.5 %) and
    # dp-motion-ecg leave-one-session-out (63.9 / 61.8 against 60.0 / 58.3), level on the two
    # other splits. A 20-epoch comparison had favoured 100 Hz, the default on 2026-12-03 only.
    segment_fs_hz: float = Field(250.0, gt=0)
    before_s: float = Field(0.25, ge=0)
    after_s: float = Field(0.45, gt=0)
    # A window with fewer beats, or an RR interval outside [rr_min_s, rr_max_s] (250 and 30 bpm),
    # is flagged in the store and counted in the batch report, never silently dropped.
    min_beats: int = Field(2, ge=1)
    rr_min_s: float = Field(0.24, gt=0)
    rr_max_s: float = Field(2.0, gt=0)
    # A recording is refused (NoBeatsError) when more of its windows than this are flagged, or
    # when its beats do not resemble each other: the median correlation of a beat with the
    # recording's median beat is below min_template_correlation (clean ECG: above 0.9; ECG-ID's
    # noisiest raw records: 0.25-0.5; peaks found in noise or in a channel holding none: 0.1-0.16).
    max_flagged_fraction: float = Field(0.5, ge=0, le=1)
    min_template_correlation: float = Field(0.25, ge=-1, le=1)

    @property
    def segment_samples(self) -> int:
        return round(self.before_s * self.segment_fs_hz) + round(self.after_s * self.segment_fs_hz)

    @model_validator(mode="after")
    def _range_is_ordered(self) -> BeatSettings:
        if self.rr_min_s >= self.rr_max_s:
            raise ValueError(f"rr_min_s {self.rr_min_s} must be below rr_max_s {self.rr_max_s}")
        if self.segment_samples < 4:
            raise ValueError("a beat segment needs at least 4 samples at segment_fs_hz")
        return self


class IngestSettings(_Strict):
    """Everything that changes the stored windows; hashed into ``ingest_hash``."""

    channel: ChannelSettings = ChannelSettings()
    filters: FilterSettings = FilterSettings()
    windows: WindowSettings = WindowSettings()
    quality: QualitySettings = QualitySettings()
    timestamps: TimestampSettings = TimestampSettings()
    beats: BeatSettings = BeatSettings()


class DiscoverySettings(_Strict):
    """Finding recordings in a folder."""

    # A file modified more recently than this may still be copying: the watched folder defers
    # it to its next run.
    settle_s: float = Field(5.0, ge=0)
    # `ecg-pipeline ingest` has no next run: it waits at most this long for such files to
    # settle (saying so), then defers what is still being written. 0: never wait.
    command_wait_s: float = Field(120.0, ge=0)
    manifest_name: str = "manifest.csv"
    # Also the files a dataset reader recognises; AcqKnowledge files by default.
    suffixes: tuple[str, ...] = (".acq",)


class LimitSettings(_Strict):
    """What one file may cost before it is refused; not hashed (they decide whether a file is
    read, not how its windows look)."""

    # Reading and windowing one file longer than this refuses it (FileTimeLimitError) and the
    # batch goes on: a corrupt header can make a reader loop for hours. A 3-minute recording
    # takes well under a second here; 0 turns the limit off.
    file_time_s: float = Field(300.0, ge=0)


class StoreSettings(_Strict):
    """Where windows live and how training reads them back."""

    root: Path = Path("data/windows")
    # Applied when windows are read: min-max to [0, 1] per window (the paper) or per recording,
    # or a z-score per window (less swayed by one artefact spike).
    normalisation: Literal["window", "recording", "window_zscore", "none"] = "window"


class DemoSettings(_Strict):
    """The synthetic demo cohort (for demos and unit tests, never for accuracy claims)."""

    n_subjects: int = Field(15, ge=1, le=99)
    duration_s: float = Field(180.0, gt=0)
    fs_hz: float = Field(1000.0, gt=0)
    resp_divider: int = Field(10, ge=1)
    # The mains hum written into the synthetic recordings; None: [ingest.filters] mains_hz (a
    # 60-Hz study hums at 60 Hz), or DEFAULT_MAINS_HZ when the notch is off.
    mains_hz: float | None = Field(None, gt=0)
    seed: int = 0
    inbox: Path = Path("data/inbox")
    # "per_condition": one file per subject x condition (S01_rest.acq); "one_file_with_markers":
    # one file per subject (S01.acq), the conditions one after another, an event marker at the
    # start of each (its text the first key of [dataset.markers] phases naming that condition).
    layout: Literal["per_condition", "one_file_with_markers"] = "per_condition"


class ModelSettings(_Strict):
    """Which network (``ecg_pipeline.models`` registry) and its widths; the paper gives none."""

    name: str = "dt4ecg"
    attention: str | None = None  # None: the model's own default (SCA for dt4ecg)
    channels: tuple[int, ...] = (32, 64, 128)
    kernel_size: int = Field(7, ge=1)
    strides: tuple[int, ...] = (1, 2, 2)
    # GradNorm's last shared layer; None: the final residual block's last conv.
    shared_param: str | None = None
    # ECG-SL (name = "ecg_sl"): beats per window after padding (10 covers 200 bpm in 3 s; more
    # are cut), the model over the beat sequence, its width and depth. The segment encoder
    # takes channels / kernel_size / strides when they are set here (else (16, 32, 64), 7,
    # (1, 2, 2)).
    max_beats: int = Field(10, ge=1)
    temporal: Literal["gru", "transformer"] = "gru"
    d_model: int = Field(64, ge=4)
    temporal_layers: int = Field(1, ge=1)
    # How a beat's encoder map becomes one vector: flattened (positions kept: beats are aligned
    # on their R peak) or averaged over time. Chosen on validation: ECG-ID last_record, time
    # blocks of the training records, seed 0, 20 epochs: flatten 88.6 %, mean 61.4 % (README).
    segment_pooling: Literal["mean", "flatten"] = "flatten"
    # Fine-tune from a pre-trained ECG-SL encoder (`ecg-pipeline pretrain`): its folder, or an
    # MLflow reference models:/ecgsl-encoder-<dataset>/<version>; None: from scratch.
    pretrained: str | None = None


class AugmentSettings(_Strict):
    """Random perturbations of training windows (``training/augment.py``); off in the paper.

    Strengths are in the windows' normalised units (a min-max window spans 0 to 1).
    """

    enabled: bool = False
    gain: float = Field(0.2, ge=0, lt=1)  # scale drawn from [1 - gain, 1 + gain]
    offset: float = Field(0.1, ge=0)
    wander: float = Field(0.1, ge=0)  # peak amplitude of a 0.05-0.5 Hz sinusoid
    noise_std: float = Field(0.02, ge=0)
    shift_s: float = Field(0.2, ge=0)  # largest time shift, edge-padded


class TrainingSettings(_Strict):
    """The paper's schedule (Adam 1e-3, batch 16, 50 epochs, GradNorm alpha 2) and the split."""

    # identity: the subject; activity: the condition (dropped when the data has one condition).
    tasks: tuple[Literal["identity", "activity"], ...] = ("identity", "activity")
    epochs: int = Field(50, ge=1)
    batch_size: int = Field(16, ge=1)
    learning_rate: float = Field(1e-3, gt=0)
    seed: int = 0
    weighting: Literal["gradnorm", "equal", "paper"] = "gradnorm"
    gradnorm_alpha: float = Field(2.0, ge=0)
    gradnorm_lr: float = Field(0.025, gt=0)
    # Departures from the paper's recipe, all off by default (configs/recipes/ switch them on).
    augment: AugmentSettings = AugmentSettings()
    weight_decay: float = Field(0.0, ge=0)  # decoupled (AdamW) when > 0
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    schedule: Literal["constant", "cosine"] = "constant"
    # group splits with >= 2 training groups: validate on one of them (the rule, and the
    # paper-like default) or on the last time block of every training recording, so that every
    # training group also trains.
    group_validation: Literal["one_group", "time_block"] = "one_group"
    # time_block: the honest split for one recording per subject x condition; window: the paper.
    split: Literal["window", "time_block", "group"] = "time_block"
    test_fraction: float = Field(0.3, gt=0, lt=1)
    val_fraction: float = Field(0.15, gt=0, lt=1)
    gap_windows: int = Field(1, ge=0)
    group_column: str | None = None
    test_groups: tuple[str, ...] | None = None
    # Label scarcity: train on this share of each fold's training recordings (by recording,
    # not by window; at least one recording per subject), seeded; validation and test unchanged.
    label_fraction: float = Field(1.0, gt=0, le=1)
    # Verification (README, "Verifying people"): this many people are left out of training
    # entirely, chosen by seed among those with no test-side recording first (so every
    # held-out record of a known person stays a genuine probe); [verify] splits them into the
    # strangers that calibrate the "unknown" threshold and the strangers that measure it.
    holdout_people: int = Field(0, ge=0)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # Threads for CPU training; None leaves torch's default.
    cpu_threads: int | None = Field(None, ge=1)
    out_dir: Path = Path("data/runs")


class PretrainSettings(_Strict):
    """Self-supervised pre-training of ECG-SL (``ecg-pipeline pretrain``); labels are unused.

    The pre-training pool is every window of ``datasets`` (this dataset when empty) except, by
    default, the test side of the fold being evaluated: one encoder per fold of ``[training]``'s
    split. ``transductive = true`` lets the test side's unlabelled windows in (one encoder for
    all folds); results trained from such an encoder are marked in the table.
    """

    objective: Literal["masked_beats", "contrastive"] = "masked_beats"
    datasets: tuple[str, ...] = ()
    transductive: bool = False
    epochs: int = Field(30, ge=1)
    batch_size: int = Field(64, ge=2)
    learning_rate: float = Field(1e-3, gt=0)
    # Recordings of the pool held out to choose the pre-training epoch (validation loss).
    val_fraction: float = Field(0.1, gt=0, lt=1)
    mask_fraction: float = Field(0.3, gt=0, lt=1)  # masked_beats: share of beats hidden
    temperature: float = Field(0.1, gt=0)  # contrastive: NT-Xent temperature
    out_dir: Path = Path("data/pretrained")


class WatchSettings(_Strict):
    """The inbox watcher (``python -m ecg_pipeline.stack.watch``); settling uses ``[discovery]``."""

    folder: Path | None = None  # None: [demo] inbox
    # Quiet time after the last arrival before one event covers the whole burst (a lab copying
    # 45 files starts one run, not 45). Equal to [discovery] settle_s by default: a file quiet
    # that long has settled too, so the two waits are one.
    debounce_s: float = Field(5.0, gt=0)
    # Network shares (SMB, NFS) deliver no inotify events: poll them instead.
    force_polling: bool = False
    poll_delay_ms: int = Field(300, ge=10)


class FlowSettings(_Strict):
    """How the ``ingest-train`` flow runs its tasks (``flows/ingest_train.py``)."""

    # "threads": files are read in a thread pool (reading and filtering release the GIL for
    # most of their time); "processes": a process pool, for CPU-heavy preprocessing on many
    # cores; "dask": a Dask cluster through prefect-dask (a local one of read_workers worker
    # processes, or the scheduler at dask_address, whose workers may be other machines that
    # see the recordings and the store at the same paths); "sequential": one file at a time,
    # for debugging.
    task_runner: Literal["threads", "processes", "dask", "sequential"] = "threads"
    # Three keeps a two-core machine busy without holding many recordings in memory.
    read_workers: int = Field(3, ge=1, le=64)
    # The Dask scheduler ("tcp://host:8786") for task_runner = "dask"; None: a local cluster.
    dask_address: str | None = None
    # Logging to MLflow is retried only when the server could not be reached.
    log_retries: int = Field(2, ge=0)
    log_retry_delay_s: float = Field(5.0, ge=0)
    # A failed train task is tried again this many times; each try continues after the last
    # finished epoch (training/resume.py), so a retry costs what was lost, not the whole run.
    train_retries: int = Field(1, ge=0)
    # How often the served deployments ask the API for runs to start. Prefect's default, 10 s,
    # is most of the delay between a file's arrival and its run; a poll is one small request.
    runner_poll_s: int = Field(1, ge=1)
    # The deployments' name: ingest-train/<deployment> and predict/<deployment>. Studies that
    # share one Prefect server need names of their own.
    deployment: str = Field("default", pattern=r"^[A-Za-z0-9_.-]+$")


class PredictSettings(_Strict):
    """Labelling new recordings with the registered ``champion`` model (``ecg-pipeline predict``)."""

    # The identity threshold is the confidence below which a recording is "unknown". Training
    # calibrates it on the validation part so that at most this share of known subjects'
    # validation recordings would be refused, and stores it with the model (change it, then
    # retrain); see ecg_pipeline/training/calibration.py for the rule and its limits.
    known_reject_rate: float = Field(0.05, ge=0, lt=1)
    # predictions-<UTC time>.parquet and rejections-<UTC time>.csv go to out_dir/<dataset>/.
    out_dir: Path = Path("data/predictions")


class VerifySettings(_Strict):
    """Verifying people by their embeddings (``ecg-pipeline verify``, ``enrol``, ``predict``).

    A recording's embedding is the mean of its windows' L2-normalised backbone features (the
    shared representation before the heads), a person's template the mean of their enrolment
    recordings' embeddings, and a score the cosine similarity of the two
    (``ecg_pipeline/training/verification.py``).
    """

    # The "unknown" threshold is set so that at most this share of the calibration strangers'
    # recordings (people left out of training, [training] holdout_people) match any enrolled
    # template; the other held-out people then measure how often a stranger is accepted.
    stranger_accept_rate: float = Field(0.05, ge=0, lt=1)
    # Share of the held-out people who calibrate the threshold (the first ones in the seeded
    # order); the rest are the test strangers.
    calibration_share: float = Field(0.5, gt=0, lt=1)
    # The fixed operating points reported beside the equal error rate.
    fixed_frr: float = Field(0.05, gt=0, lt=1)
    fixed_far: float = Field(0.01, gt=0, lt=1)
    # Where `ecg-pipeline verify` writes its results JSON and plots.
    out_dir: Path = Path("results/verification")


class ServerSettings(_Strict):
    """Where the Prefect API and the MLflow tracking server are (embedded ones by default).

    Leave the URLs empty to use the embedded servers that ``make run`` starts on ``host`` and the
    two ports, with SQLite stores under ``state_dir`` (git-ignored); set them to point the same
    commands at a lab's existing servers instead.
    """

    host: str = "127.0.0.1"  # loopback: neither server checks who is asking
    prefect_port: int = Field(4200, ge=1, le=65535)
    mlflow_port: int = Field(5000, ge=1, le=65535)
    prefect_api_url: str | None = None  # None: http://{host}:{prefect_port}/api
    # While the embedded servers run, the repository's prefect.toml names the Prefect API, so
    # Prefect commands typed there need no export (ecg_pipeline/stack/prefect_toml.py).
    prefect_toml: bool = True
    tracking_uri: str | None = None  # None: http://{host}:{mlflow_port}
    # Prefect's home (prefect.db) and the pid/log files of the servers the project started.
    state_dir: Path = Path("data/state")
    # The embedded MLflow store: mlflow.db and artifacts/ (git-ignored run data).
    mlflow_dir: Path = Path("mlflow")
    # PostgreSQL behind the servers the project starts, for several writers at once (see the
    # README, "Scaling out"); None: SQLite under state_dir and mlflow_dir. Prefect's takes
    # "postgresql+asyncpg://user:password@host:5432/prefect", MLflow's
    # "postgresql+psycopg2://user:password@host:5432/mlflow". Artifacts stay behind MLflow's
    # proxy in mlflow_dir/artifacts either way, so workers elsewhere need no shared folder.
    prefect_database_url: str | None = None
    mlflow_backend_uri: str | None = None

    @property
    def prefect_api(self) -> str:
        return self.prefect_api_url or f"http://{self.host}:{self.prefect_port}/api"

    @property
    def mlflow_uri(self) -> str:
        return self.tracking_uri or f"http://{self.host}:{self.mlflow_port}"


# [ingest] settings added after stores were written, whose defaults change no stored window: the
# quality account's settings (a report in each file's footer; a recording kept is windowed as
# before) and the heartbeat test (real ECG passes it: measured on every real file in ../shared).
_HASH_NEUTRAL_AT_DEFAULT = (
    ("quality", "min_heartbeat_periodicity"),
    ("quality", "neurokit_methods"),
    ("quality", "neurokit_max_windows"),
    ("quality", "min_window_score"),
    ("quality", "min_recording_score"),
)


class StudyConfig(_Strict):
    """The whole configuration of one study or dataset."""

    dataset: DatasetSettings = DatasetSettings()
    ingest: IngestSettings = IngestSettings()
    discovery: DiscoverySettings = DiscoverySettings()
    limits: LimitSettings = LimitSettings()
    store: StoreSettings = StoreSettings()
    demo: DemoSettings = DemoSettings()
    model: ModelSettings = ModelSettings()
    training: TrainingSettings = TrainingSettings()
    pretrain: PretrainSettings = PretrainSettings()
    servers: ServerSettings = ServerSettings()
    watch: WatchSettings = WatchSettings()
    flow: FlowSettings = FlowSettings()
    predict: PredictSettings = PredictSettings()
    verify: VerifySettings = VerifySettings()

    @field_validator("dataset")
    @classmethod
    def _check_pattern_compiles(cls, v: DatasetSettings) -> DatasetSettings:
        import re

        re.compile(v.subject_pattern)
        return v

    @model_validator(mode="after")
    def _demo_markers_name_every_condition(self) -> StudyConfig:
        if self.demo.layout == "one_file_with_markers":
            named = set(self.dataset.markers.phases.values())
            missing = [c for c in self.dataset.conditions if c not in named]
            if missing:
                raise ValueError(
                    '[demo] layout = "one_file_with_markers" needs a marker text for every '
                    f"condition in [dataset.markers] phases; none names {missing}"
                )
        return self

    def markers_hash(self) -> str:
        """Short stable hash of ``[dataset.markers]``: stored with each phase cut by markers, so
        that a changed map re-splits marker files (and only them)."""
        canonical = json.dumps(self.dataset.markers.model_dump(mode="json"), sort_keys=True)
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    def ingest_hash(self) -> str:
        """Short stable hash of the ``[ingest]`` part: what the stored windows depend on.

        Settings added after stores existed (:data:`_HASH_NEUTRAL_AT_DEFAULT`) count only once
        they leave their default: at it, they leave every window as it was, so a store written
        before them keeps its hash (and the runs trained on it stay reusable); set otherwise,
        they change the hash and the store is ingested again.
        """
        dump = self.ingest.model_dump(mode="json")
        defaults = IngestSettings().model_dump(mode="json")
        for section, key in _HASH_NEUTRAL_AT_DEFAULT:
            if dump[section][key] == defaults[section][key]:
                del dump[section][key]
        canonical = json.dumps(dump, sort_keys=True)
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    def with_overrides(self, values: Mapping[str, Any] | None = None, **dotted: Any) -> StudyConfig:
        """A copy with some settings replaced, validated like a configuration file.

        Parameters
        ----------
        values, **dotted
            Dotted keys and their new values, ``{"training.seed": 1}`` or
            ``training__seed=1`` (``__`` for the dots); None values are skipped, so optional
            parameters can be passed straight through.

        Raises
        ------
        ValueError
            An unknown key or a bad value, naming it (as :func:`load_config`).

        Examples
        --------
        >>> StudyConfig().with_overrides({"training.epochs": 5}).training.epochs
        5
        """
        raw = self.model_dump(mode="json")
        items = {**(values or {}), **{k.replace("__", "."): v for k, v in dotted.items()}}
        described = []
        for key, value in items.items():
            if value is None:
                continue
            table: Any = value.as_posix() if isinstance(value, Path) else value
            for part in reversed(key.split(".")):
                table = {part: table}
            raw = _merge(raw, table)
            described.append(f"{key}={value!r}")
        return _validate(raw, " + ".join(["configuration", *described]))

    @property
    def demo_mains_hz(self) -> float:
        """The mains frequency the demo cohort's recordings hum at (see ``[demo] mains_hz``)."""
        return self.demo.mains_hz or self.ingest.filters.mains_hz or DEFAULT_MAINS_HZ

    @property
    def dataset_store(self) -> Path:
        """The store folder of this dataset (one folder per dataset)."""
        return self.store.root / self.dataset.name


def _read_toml(path: Path) -> dict:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{path}: not valid TOML: {exc}") from exc


def _merge(base: dict, layer: dict) -> dict:
    """``layer`` over ``base``, table by table (a value replaces, a table merges)."""
    out = dict(base)
    for key, value in layer.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def parse_override(assignment: str) -> dict:
    """``"training.augment.enabled=true"`` as the nested table ``{"training": {...}}``.

    The value is read as a TOML value (numbers, booleans, ``[1, 2]``, quoted strings); anything
    that is not one is taken as a bare string, so ``model.attention=none`` works unquoted.
    """
    key, sep, value = assignment.partition("=")
    if not sep or not key.strip():
        raise ValueError(f"override {assignment!r} is not KEY=VALUE (e.g. training.epochs=5)")
    try:
        parsed = tomllib.loads(f"v = {value.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        parsed = value.strip()
    table: dict = parsed
    for part in reversed(key.strip().split(".")):
        table = {part: table}
    return table


def load_config(
    path: str | Path | None = None,
    *,
    recipes: Sequence[str | Path] = (),
    overrides: Sequence[str] = (),
) -> StudyConfig:
    """Read a study configuration from a TOML file; ``None`` gives the defaults (the demo study).

    Parameters
    ----------
    path : str or Path, optional
        The study or dataset file (``configs/dp-motion.toml``).
    recipes : sequence of paths
        Files laid over it in order, e.g. a training recipe (``configs/recipes/tuned.toml``)
        shared by every dataset.
    overrides : sequence of str
        ``KEY=VALUE`` assignments laid over everything (``training.weighting=equal``).

    Raises
    ------
    ValueError
        When a file is not valid TOML, an override is malformed, or the result holds unknown
        keys or bad values; the message names the files and every offending key.
    """
    raw: dict = {}
    sources = []
    for layer in ([path] if path is not None else []) + list(recipes):
        raw = _merge(raw, _read_toml(Path(layer)))
        sources.append(str(layer))
    for assignment in overrides:
        raw = _merge(raw, parse_override(assignment))
        sources.append(f"--set {assignment}")
    return _validate(raw, " + ".join(sources) or "defaults")


def _validate(raw: dict, where: str) -> StudyConfig:
    from pydantic import ValidationError

    try:
        return StudyConfig.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise ValueError(f"{where}: invalid configuration: {problems}") from exc
