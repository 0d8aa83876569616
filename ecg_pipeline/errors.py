"""One exception type per failure kind.

Every error carries the file it is about, the pipeline stage that refused it and a reason a person
can act on, so that a batch can record it in the rejections table and go on with the next file.
"""

from __future__ import annotations

from pathlib import Path


class IngestError(Exception):
    """Base class: a recording that cannot be ingested, with the file and the reason."""

    stage = "ingest"
    # What the batch makes of the file: "rejected" (fix the file or its labels), or "deferred"
    # (nothing wrong with it yet; a later run takes it).
    status = "rejected"

    # A reason can quote a file's bytes or a library's message about them: it goes to the
    # rejections table, the console and MLflow, so it is kept printable and short.
    MAX_REASON_CHARS = 1000

    # The sha256 of the refused bytes when the batch had hashed them (planned files); empty for
    # files refused before they were read (unsafe links, unparseable labels, still copying).
    sha256 = ""

    def __init__(self, path: str | Path | None, reason: str):
        self.path = str(path) if path is not None else ""
        reason = "".join(c if c.isprintable() else "?" for c in str(reason))
        if len(reason) > self.MAX_REASON_CHARS:
            reason = reason[: self.MAX_REASON_CHARS - 3] + "..."
        self.reason = reason
        super().__init__(f"{self.path}: {reason}" if self.path else reason)

    def __reduce__(self):
        # Rebuilt from (path, reason), not from the formatted message: results cross process
        # boundaries (a process-pool task runner) and must come back as the same error, with
        # what was set on it since (its sha256, a duplicate's pair).
        return (type(self), (self.path or None, self.reason), dict(self.__dict__))


class NotAcqFileError(IngestError):
    """The bytes are not an AcqKnowledge file (empty, random, text, unknown layout)."""

    stage = "read"


class TruncatedFileError(IngestError):
    """The header promises more data than the file holds, or the data block is cut."""

    stage = "read"


class ChannelSelectionError(IngestError):
    """No ECG channel, several candidate channels, or a configured channel that is not there."""

    stage = "channel"


class NoEcgChannelError(ChannelSelectionError):
    """No channel looks like ECG; the message lists the channels found."""


class AmbiguousChannelError(ChannelSelectionError):
    """More than one channel could be the ECG; the configuration must pick one."""


class SamplingRateError(IngestError):
    """The native rate is below the target rate (upsampling would invent signal)."""

    stage = "signal"


class TooShortError(IngestError):
    """The recording holds less than one window."""

    stage = "signal"


class SignalQualityError(IngestError):
    """Flat or disconnected lead: no usable ECG in the recording."""

    stage = "quality"


class NoHeartbeatError(IngestError):
    """A channel named ECG that holds no heartbeat (mains hum, broadband noise, a detached
    lead): its QRS-band energy never comes back at a heart's pace, whatever peaks a detector
    would find in it."""

    stage = "quality"


class LowQualityError(IngestError):
    """A recording whose quality score is below ``[ingest.quality] min_recording_score``
    (off by default)."""

    stage = "quality"


class NoBeatsError(IngestError):
    """No heartbeat found in the ECG channel (a lead off, or a channel named ECG holding none)."""

    stage = "beats"


class MetadataError(IngestError):
    """Subject or condition missing, unknown, or not allowed by the configuration."""

    stage = "metadata"


class NoPhaseMarkersError(IngestError):
    """A file to split by event markers has none, or none that names a protocol phase."""

    stage = "markers"


class AmbiguousMarkerError(IngestError):
    """One event marker matches keys of ``[dataset.markers] phases`` naming two conditions."""

    stage = "markers"


class PhaseNotKeptError(IngestError):
    """One phase of a marker-split file is not stored (too short, overlapping, repeated, past
    the end); the file's other phases are."""

    stage = "markers"


class DuplicateRecordingError(IngestError):
    """Another file already holds this subject x condition (x session), or these bytes."""

    stage = "store"

    def __init__(self, path, reason: str, pair: tuple | None = None):
        super().__init__(path, reason)
        # (subject, condition, session) when two files claim one pair; None for copied bytes.
        self.pair = pair


class UnreadableFileError(IngestError):
    """The operating system would not give the file's bytes (permissions, vanished, no memory)."""

    stage = "read"


class FileTimeLimitError(IngestError):
    """Reading and windowing the file took longer than ``[limits] file_time_s``."""

    stage = "read"


class UnexpectedIngestError(IngestError):
    """A failure nobody foresaw (a reader bug, an unknown layout): reported, never fatal."""

    stage = "ingest"


class StillBeingWrittenError(IngestError):
    """Modified within the settle time: deferred to a later run, not waited for."""

    stage = "discover"
    status = "deferred"


class UnsafePathError(IngestError):
    """A path that leads outside the recordings folder (a link, ``..``, an absolute path in a
    manifest): refused unread."""

    stage = "discover"


class FormatError(IngestError):
    """A dataset file (CSV, WFDB) that cannot be parsed."""

    stage = "read"


class StoreFullError(OSError):
    """The store's disk is full or over quota: the batch stops, nothing partial is left.

    Not a fault of any recording, so not an :class:`IngestError`: every file not yet written
    is taken by the next run once there is space.
    """

    def __init__(self, store: str | Path, detail: OSError):
        self.store = str(store)
        super().__init__(
            detail.errno,
            f"the window store's disk is full ({detail.strerror}) at {self.store}: the "
            "recordings written so far are complete, the rest are not stored and no partial "
            "file is left; free space and run again (raw recordings are untouched)",
        )


class ModelMismatchError(ValueError):
    """A model and a configuration that would feed it windows it was not trained on.

    Raised before any file is read: prediction with other ``[ingest]`` settings (filters, rate,
    window length, channel) than the model's training windows gives confident nonsense.
    """

    def __init__(self, model: str, config: str, reason: str):
        self.model = model
        self.config = config
        self.reason = reason
        super().__init__(f"model {model} does not fit the configuration {config}: {reason}")


class EnrolmentError(ValueError):
    """An enrolment that cannot be made or stored; nothing already stored is changed.

    Attributes
    ----------
    path : str
        The file at fault: a recording that failed ingest's checks, or the templates file.
    stage : str
        ``"enrol"``, or the ingest stage that refused the recording (``"read"``, ...).
    reason : str
        What is wrong and what to do.
    """

    def __init__(self, path: str | Path | None, reason: str, stage: str = "enrol"):
        self.path = str(path) if path is not None else ""
        self.stage = stage
        self.reason = reason
        super().__init__(f"{self.path}: {reason}" if self.path else reason)


class AlreadyEnrolledError(EnrolmentError):
    """The person is enrolled already; replacing the template must be asked for."""


class EnrolmentRecordingError(EnrolmentError):
    """An enrolment recording refused by ingest's checks, or named twice; ``stage`` is ingest's."""


class TemplatesFileError(EnrolmentError):
    """A ``templates.json`` that cannot be read as this version's format."""


class TemplatesWeightsError(EnrolmentError):
    """A ``templates.json`` made with other weights than the checkpoint now holds."""
