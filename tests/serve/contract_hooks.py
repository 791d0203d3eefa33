"""schemathesis hooks for the contract test (tests/serve/contract.toml names this module).

An audio body is `format: binary` with media type audio/wav: a schema cannot say "speech",
and random bytes rightly get a 400. The positive cases send real speech instead, so the turn
and transcription routes run end to end.
"""

import schemathesis
from hypothesis import strategies as st

from tests.speech import QUESTIONS, speech_wav

# Two short questions, at the voice's rate and at 16 kHz: each positive case is a real turn.
SPEECH = [speech_wav(QUESTIONS[1]), speech_wav(QUESTIONS[4], rate=16_000)]
schemathesis.openapi.media_type("audio/wav", st.sampled_from(SPEECH))
