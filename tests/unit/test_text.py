from pipeline.voice.text import ClauseChunker, chunk_stream, clean_for_speech, split_sentences


def _tokens(text: str) -> list[str]:
    return [text[i : i + 3] for i in range(0, len(text), 3)]


def test_first_clause_is_released_at_the_first_comma() -> None:
    chunker = ClauseChunker()
    out: list[str] = []
    for tok in _tokens("Load 427 is on its way, and it should arrive at noon. Drive safe."):
        out += chunker.push(tok)
        if out:
            break
    assert out == ["Load 427 is on its way,"]


def test_stream_is_split_without_losing_words() -> None:
    text = "Sure, the north warehouse holds 42 pallets of water. The south one has 3.5 pallets! Ok?"
    chunks = list(chunk_stream(_tokens(text)))
    assert " ".join(chunks) == text
    assert chunks[0] == "Sure, the north warehouse holds 42 pallets of water."
    assert all(c[-2:] != "3." for c in chunks)  # never cut inside a number


def test_long_run_without_punctuation_is_cut_at_a_space() -> None:
    text = "word " * 100
    chunks = list(chunk_stream(_tokens(text), max_first_chars=30, max_chars=60))
    assert len(chunks[0]) <= 30
    assert all(len(c) <= 60 for c in chunks)
    assert " ".join(chunks).split() == text.split()


def test_markdown_is_removed_for_speech() -> None:
    assert clean_for_speech("**Load 427** is `late`.\n- item one") == "Load 427 is late. item one"
    assert split_sentences("One. Two! Three?") == ["One.", "Two!", "Three?"]


def test_history_is_trimmed_in_blocks_to_keep_the_prompt_prefix() -> None:
    from pipeline.llm.window import trim_in_blocks
    from pipeline.types import ChatMessage

    history: list[ChatMessage] = []
    firsts = []
    for turn in range(10):
        history += [ChatMessage("user", f"q{turn}"), ChatMessage("assistant", f"a{turn}")]
        trim_in_blocks(history, 4)
        firsts.append(history[0].content)
        assert 4 <= len(history) < 8 or turn < 2
    # the first message (the prompt prefix after the system prompt) changes only every 2 turns
    assert firsts == ["q0", "q0", "q0", "q2", "q2", "q4", "q4", "q6", "q6", "q8"]
