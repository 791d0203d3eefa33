"""The voice path: session loop, utterances, replies, turn detection, speaking, events, audio."""
