"""Whether a transcript reads as a whole request (the end of turn waits less when it does)."""

import pytest

from pipeline.voice.complete import Completeness, completeness
from pipeline.voice.vad import FRAME_BYTES, TurnDetector, VadEvent
from tests.speech import pcm16k, silence

DONE, MORE, UNSURE = Completeness.COMPLETE, Completeness.INCOMPLETE, Completeness.UNSURE


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("What is the status of load 427?", DONE),
        ("How many pallets of bottled water are in the north warehouse?", DONE),
        ("Yes.", DONE),
        ("No, cancel it.", DONE),
        ("Okay", DONE),
        ("What is the status of", MORE),
        ("What is the status of?", MORE),  # a recogniser's question mark does not finish it
        ("How many pallets of bottled water are in the", MORE),
        ("Schedule a pickup from Dallas to", MORE),
        ("Is load four hundred", MORE),
        ("Where's the reefer and", MORE),
        ("Um, which trucks are, uh", MORE),
        ("Where is", MORE),
        ("Load 427", UNSURE),
        ("", UNSURE),
        ("...", UNSURE),
    ],
)
def test_completeness(text: str, expected: Completeness) -> None:
    assert completeness(text) is expected


def _push(detector: TurnDetector, pcm: bytes) -> list[VadEvent]:
    events = []
    for i in range(0, len(pcm) - FRAME_BYTES + 1, FRAME_BYTES):
        _, event = detector.push(pcm[i : i + FRAME_BYTES])
        if event is not None:
            events.append(event)
    return events


def test_a_pause_can_be_given_its_own_length() -> None:
    speech = pcm16k("Which dock doors are open?", trim=True)
    d = TurnDetector(silence_ms=300, onset_ms=60)
    assert VadEvent.SPEECH_START in _push(d, speech)  # (its own short pauses too)
    assert _push(d, silence(100)) == [VadEvent.SILENCE_ONSET]
    assert not d.end_pause_at(140)  # already 100 ms into the pause: two more frames
    assert _push(d, silence(20)) == []
    assert _push(d, silence(20)) == [VadEvent.SPEECH_END]
    # Longer, and speech clears it: the next pause has the configured 300 ms again.
    assert VadEvent.SPEECH_START in _push(d, speech)
    assert _push(d, silence(100)) == [VadEvent.SILENCE_ONSET]
    assert not d.end_pause_at(1000)
    assert _push(d, silence(600)) == []
    assert d.end_pause_at(600)  # (speech would clear it; this one is over)
    d.end_pause_at(1000)
    assert _push(d, speech)[0] is VadEvent.SPEECH_RESUMED
    assert _push(d, silence(300)) == [VadEvent.SILENCE_ONSET, VadEvent.SPEECH_END]
    assert not d.end_pause_at(100)  # not in a pause: nothing to shorten
    assert _push(d, silence(100)) == []
