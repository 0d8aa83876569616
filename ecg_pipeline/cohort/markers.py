"""Protocol phases from event markers: which stretch of one long recording is which condition.

A lab records one AcqKnowledge file per subject and drops a marker at each phase change
("Rest", "Post run", "Deep breathing"). :func:`split_phases` turns a file's markers and the
study's ``[dataset.markers]`` map into phases (condition, start, end), plus what it noticed on
the way and the phases it could not keep, each with a reason. Pure: markers and numbers in,
decisions out; reading the file and cutting its signal belong to ``ecg_pipeline.ingest``.

Rules
-----
* A marker names a phase when its text equals a key of the map (ignoring case and surrounding
  spaces) or matches the key as a regular expression over the whole text (ignoring case).
  A marker that two keys send to two different conditions makes the file ambiguous
  (:class:`~ecg_pipeline.errors.AmbiguousMarkerError`): no guess is made.
* Markers are taken in time order; a file that stores them out of order is noted.
* A phase runs from its marker (plus the condition's ``offset_s``) to the next phase marker,
  or the end of the recording, and at most ``max_length_s``.
* Consecutive markers of one condition ("Deep Breath 1", "Deep Breath 2") continue one phase.
* A condition that comes back after another phase is kept once, its first time: a file is one
  subject, and a subject x condition is stored once.
* Two phase markers of different conditions at the same instant overlap: neither is kept.
* A phase shorter than one window, or a marker past the end of the recording, is not kept.
* Markers that name no phase (AcqKnowledge's own "Segment 1", events on other channels) are
  noted and otherwise ignored; a file with no markers at all, or none that names a phase, is
  refused (:class:`~ecg_pipeline.errors.NoPhaseMarkersError`).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from ecg_pipeline.config import MarkerSettings
from ecg_pipeline.errors import AmbiguousMarkerError, NoPhaseMarkersError
from ecg_pipeline.io.recording import EventMarker


@dataclass(frozen=True)
class Phase:
    """One protocol phase of a recording, in seconds from the start of the file."""

    condition: str
    marker: str  # the text of the marker that opened it
    start_s: float
    end_s: float

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s

    def describe(self) -> str:
        return f"{self.condition} ({self.marker!r}, {self.start_s:.1f}-{self.end_s:.1f} s)"


@dataclass
class PhaseSplit:
    """What :func:`split_phases` decided: phases to store, notes, and phases not kept."""

    phases: list[Phase]
    notes: list[str] = field(default_factory=list)  # kept with every stored phase
    dropped: list[str] = field(default_factory=list)  # one refusal each


def conditions_of(text: str, phases: dict[str, str]) -> dict[str, str]:
    """The conditions that ``text`` names under the map, each with the key that matched.

    Examples
    --------
    >>> conditions_of("Post Run", {"post run": "exercise", "breath.*": "deep_breathing"})
    {'exercise': 'post run'}
    >>> conditions_of("Breathing, deep", {"breath.*": "deep_breathing"})
    {'deep_breathing': 'breath.*'}
    >>> conditions_of("Segment 1", {"rest": "rest"})
    {}
    """
    found: dict[str, str] = {}
    plain = text.strip().casefold()
    for key, condition in phases.items():
        if key.strip().casefold() == plain or _pattern_matches(key, text.strip()):
            found.setdefault(condition, key)
    return found


def _pattern_matches(key: str, text: str) -> bool:
    try:
        return re.fullmatch(key, text, flags=re.IGNORECASE) is not None
    except re.error:  # a key that is not a valid pattern is plain text only
        return False


def split_phases(
    markers: Sequence[EventMarker],
    duration_s: float,
    settings: MarkerSettings,
    *,
    min_length_s: float,
) -> PhaseSplit:
    """Cut a recording of ``duration_s`` seconds into protocol phases at its event markers.

    Parameters
    ----------
    markers : sequence of EventMarker
        The file's markers, in the order the file stores them.
    duration_s : float
        Length of the recording's ECG channel, in seconds.
    settings : MarkerSettings
        ``[dataset.markers]``: the map from marker text to condition, offsets, maximum lengths.
    min_length_s : float
        The shortest phase worth storing (one window).

    Returns
    -------
    PhaseSplit
        The phases in time order, the notes to keep with them, and a reason per phase not kept.

    Raises
    ------
    NoPhaseMarkersError
        The file has no markers, or none that names a phase.
    AmbiguousMarkerError
        One marker names two conditions.

    Examples
    --------
    >>> from ecg_pipeline.config import MarkerSettings
    >>> from ecg_pipeline.io.recording import EventMarker
    >>> s = MarkerSettings(phases={"rest": "rest", "post run": "exercise"})
    >>> marks = [EventMarker("Rest", 0.0), EventMarker("Post run", 200.0)]
    >>> [p.describe() for p in split_phases(marks, 260.0, s, min_length_s=3.0).phases]
    ["rest ('Rest', 0.0-200.0 s)", "exercise ('Post run', 200.0-260.0 s)"]
    """
    if not markers:
        raise NoPhaseMarkersError(
            None,
            "no event markers in the file: nothing says where each phase starts; name the "
            "condition in the file name (S07_rest.acq) or the manifest, or add markers",
        )
    notes: list[str] = []
    times = [m.time_s for m in markers]
    if any(b < a for a, b in zip(times, times[1:], strict=False)):
        notes.append("event markers stored out of time order: taken in time order")
    ordered = sorted(markers, key=lambda m: m.time_s)

    named: list[tuple[EventMarker, str]] = []
    ignored: list[EventMarker] = []
    for m in ordered:
        found = conditions_of(m.text, settings.phases)
        if len(found) > 1:
            keys = ", ".join(f"{key!r} -> {cond}" for cond, key in found.items())
            raise AmbiguousMarkerError(
                None,
                f"marker {m.text!r} at {m.time_s:.1f} s names two conditions ({keys}): "
                "make the [dataset.markers] phases keys exclusive",
            )
        if found:
            named.append((m, next(iter(found))))
        else:
            ignored.append(m)
    if ignored:
        notes.append("markers naming no phase, ignored: " + _summarise(ignored))
    if not named:
        raise NoPhaseMarkersError(
            None,
            f"none of its {len(markers)} event marker(s) ({_summarise(ordered)}) names a phase "
            f"of [dataset.markers] phases ({', '.join(repr(k) for k in settings.phases)})",
        )

    dropped: list[str] = []
    inside = []
    for m, condition in named:
        if m.time_s >= duration_s:
            dropped.append(
                f"marker {m.text!r} ({condition}) at {m.time_s:.1f} s is past the end of the "
                f"recording ({duration_s:.1f} s)"
            )
        else:
            inside.append((m, condition))

    # Phase starts: a marker of the condition already running continues it.
    starts: list[tuple[EventMarker, str]] = []
    for m, condition in inside:
        if starts and starts[-1][1] == condition:
            notes.append(f"marker {m.text!r} at {m.time_s:.1f} s continues {condition}")
            continue
        starts.append((m, condition))

    overlapping = set()
    for i, ((a, ca), (b, cb)) in enumerate(zip(starts, starts[1:], strict=False)):
        if b.time_s == a.time_s and ca != cb:
            overlapping |= {i, i + 1}
            dropped.append(
                f"markers {a.text!r} ({ca}) and {b.text!r} ({cb}) both at {a.time_s:.1f} s "
                "overlap: which phase starts there is ambiguous, neither is kept"
            )

    phases: list[Phase] = []
    first_of: dict[str, Phase] = {}
    for i, (m, condition) in enumerate(starts):
        if i in overlapping:
            continue
        end_s = starts[i + 1][0].time_s if i + 1 < len(starts) else duration_s
        start_s = m.time_s + settings.offset_s.get(condition, 0.0)
        if condition in settings.max_length_s:
            end_s = min(end_s, start_s + settings.max_length_s[condition])
        phase = Phase(condition, m.text, start_s, max(end_s, start_s))
        if condition in first_of:
            dropped.append(
                f"phase {phase.describe()} repeats {condition}, already from "
                f"{first_of[condition].describe()}: a condition is stored once per file"
            )
            continue
        if phase.duration_s < min_length_s:
            dropped.append(
                f"phase {phase.describe()} is shorter than one {min_length_s:g}-s window"
                + (
                    f" (after its {settings.offset_s[condition]:g}-s offset)"
                    if settings.offset_s.get(condition)
                    else ""
                )
            )
            first_of[condition] = phase
            continue
        first_of[condition] = phase
        phases.append(phase)
    if phases and phases[0].start_s > 0:
        notes.append(f"the first {phases[0].start_s:.1f} s, before the first phase, not used")
    return PhaseSplit(phases, notes, dropped)


def _summarise(markers: Sequence[EventMarker], limit: int = 6) -> str:
    """``'Segment 1', 'EDA Peak' (x2)``: each text once, with its count."""
    counts = Counter(m.text for m in markers)
    parts = [f"{text!r}" + (f" (x{n})" if n > 1 else "") for text, n in counts.items()]
    more = len(parts) - limit
    return ", ".join(parts[:limit]) + (f" and {more} more" if more > 0 else "")
