"""Protocol phases from event markers (ecg_pipeline.cohort.markers): every rule and reason."""

from __future__ import annotations

import pytest

from ecg_pipeline.cohort.markers import conditions_of, split_phases
from ecg_pipeline.config import MarkerSettings, StudyConfig
from ecg_pipeline.errors import AmbiguousMarkerError, NoPhaseMarkersError
from ecg_pipeline.io.recording import EventMarker as M

LAB = MarkerSettings(phases={"rest": "rest", "post run": "exercise", "breath.*": "deep_breathing"})


def split(markers, duration_s=600.0, settings=LAB, min_length_s=3.0):
    return split_phases(markers, duration_s, settings, min_length_s=min_length_s)


def spans(result):
    return [(p.condition, p.marker, p.start_s, p.end_s) for p in result.phases]


def test_text_matches_ignoring_case_and_spaces_and_patterns_match_the_whole_text():
    assert conditions_of("  REST ", LAB.phases) == {"rest": "rest"}
    assert conditions_of("Breathing deeply", LAB.phases) == {"deep_breathing": "breath.*"}
    assert conditions_of("Deep breathing", LAB.phases) == {}  # fullmatch: "breath.*" from start
    assert conditions_of("rest stop", LAB.phases) == {}


def test_each_phase_runs_to_the_next_phase_marker_or_the_end():
    result = split([M("Rest", 0.0), M("Post run", 180.0), M("Breathing", 300.0)], 420.0)
    assert spans(result) == [
        ("rest", "Rest", 0.0, 180.0),
        ("exercise", "Post run", 180.0, 300.0),
        ("deep_breathing", "Breathing", 300.0, 420.0),
    ]
    assert result.dropped == [] and result.notes == []


def test_offsets_and_maximum_lengths_apply_per_condition():
    settings = LAB.model_copy(update={"offset_s": {"exercise": 10.0}, "max_length_s": {"rest": 60}})
    result = split([M("rest", 5.0), M("post run", 200.0)], 300.0, settings)
    assert spans(result) == [("rest", "rest", 5.0, 65.0), ("exercise", "post run", 210.0, 300.0)]
    assert any("first 5.0 s" in n for n in result.notes)


def test_markers_naming_no_phase_are_noted_and_ignored():
    result = split([M("Segment 1", 0.0), M("rest", 1.0), M("EDA Peak", 9.0), M("EDA Peak", 9.0)])
    assert spans(result) == [("rest", "rest", 1.0, 600.0)]
    assert result.notes[0] == "markers naming no phase, ignored: 'Segment 1', 'EDA Peak' (x2)"


def test_a_file_with_one_known_and_one_unknown_phase_keeps_the_known_one():
    # The unknown marker ends nothing: only phase markers bound phases.
    result = split([M("rest", 0.0), M("Stroop task", 100.0)], 200.0)
    assert spans(result) == [("rest", "rest", 0.0, 200.0)]
    assert "'Stroop task'" in result.notes[0]


def test_no_markers_at_all_is_refused_with_its_own_reason():
    with pytest.raises(NoPhaseMarkersError, match="no event markers in the file"):
        split([])


def test_markers_that_name_no_phase_refuse_the_file_naming_them():
    with pytest.raises(NoPhaseMarkersError, match=r"'Segment 1'.*names a phase.*'post run'"):
        split([M("Segment 1", 0.0)])


def test_a_marker_two_keys_send_to_two_conditions_is_refused_naming_both():
    settings = MarkerSettings(phases={"rest.*": "rest", ".*run": "exercise"})
    with pytest.raises(
        AmbiguousMarkerError, match=r"'rest after run'.*'rest\.\*' -> rest.*exercise"
    ):
        split([M("rest after run", 0.0)], settings=settings)


def test_two_keys_naming_one_condition_are_not_ambiguous():
    settings = MarkerSettings(
        phases={"Deep breathing": "deep_breathing", ".*breath.*": "deep_breathing"}
    )
    assert spans(split([M("Deep breathing", 0.0)], 10.0, settings)) == [
        ("deep_breathing", "Deep breathing", 0.0, 10.0)
    ]


def test_a_phase_shorter_than_one_window_is_not_kept_and_says_so():
    result = split([M("rest", 0.0), M("post run", 2.0), M("breathing", 100.0)], 200.0)
    assert [p.condition for p in result.phases] == ["exercise", "deep_breathing"]
    assert result.dropped == ["phase rest ('rest', 0.0-2.0 s) is shorter than one 3-s window"]


def test_an_offset_that_eats_the_phase_is_named_in_the_reason():
    settings = LAB.model_copy(update={"offset_s": {"exercise": 50.0}})
    result = split([M("post run", 0.0), M("rest", 30.0)], 100.0, settings)
    assert "after its 50-s offset" in result.dropped[0]
    assert [p.condition for p in result.phases] == ["rest"]


def test_markers_stored_out_of_time_order_are_taken_in_time_order():
    result = split([M("post run", 100.0), M("rest", 0.0)], 200.0)
    assert spans(result) == [("rest", "rest", 0.0, 100.0), ("exercise", "post run", 100.0, 200.0)]
    assert "out of time order" in result.notes[0]


def test_two_phase_markers_at_one_instant_overlap_and_neither_is_kept():
    result = split([M("rest", 0.0), M("post run", 50.0), M("breathing", 50.0)], 200.0)
    assert [p.condition for p in result.phases] == ["rest"]
    assert "overlap" in result.dropped[0] and "'post run'" in result.dropped[0]


def test_consecutive_markers_of_one_condition_continue_one_phase():
    result = split(
        [M("Deep Breath 1", 6.2), M("Deep Breath 2", 16.7)],
        61.9,
        MarkerSettings(phases={"deep breath.*": "deep_breathing"}),
    )
    assert spans(result) == [("deep_breathing", "Deep Breath 1", 6.2, 61.9)]
    assert any("continues deep_breathing" in n for n in result.notes)


def test_a_condition_that_comes_back_is_kept_once_its_first_time():
    result = split([M("rest", 0.0), M("post run", 60.0), M("rest", 120.0)], 200.0)
    assert spans(result) == [("rest", "rest", 0.0, 60.0), ("exercise", "post run", 60.0, 120.0)]
    assert "repeats rest" in result.dropped[0]


def test_a_marker_past_the_end_of_the_recording_is_not_kept():
    result = split([M("rest", 0.0), M("post run", 250.0)], 200.0)
    assert spans(result) == [("rest", "rest", 0.0, 200.0)]
    assert "past the end" in result.dropped[0]


def test_the_map_must_name_configured_conditions():
    with pytest.raises(
        ValueError, match=r"phases map to conditions not in `conditions`: \['stroop'\]"
    ):
        StudyConfig().with_overrides({"dataset.markers.phases": {"stroop": "stroop"}})
    with pytest.raises(ValueError, match="offset_s must be >= 0"):
        StudyConfig().with_overrides({"dataset.markers.offset_s": {"rest": -1.0}})


def test_the_marker_demo_layout_needs_a_marker_for_every_condition():
    with pytest.raises(ValueError, match=r"none names \['exercise', 'deep_breathing'\]"):
        StudyConfig().with_overrides(
            {"demo.layout": "one_file_with_markers", "dataset.markers.phases": {"rest": "rest"}}
        )


def test_the_marker_map_leaves_the_ingest_hash_alone():
    plain = StudyConfig()
    mapped = plain.with_overrides({"dataset.markers.phases": dict(LAB.phases)})
    assert mapped.ingest_hash() == plain.ingest_hash()
    assert mapped.markers_hash() != plain.markers_hash()
