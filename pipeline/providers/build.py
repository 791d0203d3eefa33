"""Build providers from config. The only place that knows which implementation backs a stage."""

from __future__ import annotations

from pathlib import Path

from pipeline.config import LlmArgs, SttArgs, TtsArgs
from pipeline.providers import model_files
from pipeline.providers.base import ChatProvider, SttProvider, TtsProvider
from pipeline.providers.llama import LlamaChat
from pipeline.providers.piper import PiperTTS
from pipeline.providers.simulated import SimulatedChat, SimulatedSTT, SimulatedTTS
from pipeline.providers.whisper import WhisperSTT


def build_stt(args: SttArgs, cache_dir: Path) -> SttProvider:
    if args.provider == "simulated":
        sim = args.simulated
        return SimulatedSTT(final_ms=sim.first_ms, jitter=sim.jitter, seed=sim.seed)
    return WhisperSTT(
        model_files.whisper_dir(args.model, cache_dir),
        cpu_threads=args.cpu_threads,
        beam_size=args.beam_size,
        vocabulary=args.vocabulary,
        timeout_s=args.timeout_s,
    )


def build_chat(args: LlmArgs, cache_dir: Path) -> ChatProvider:
    if args.provider == "simulated":
        sim = args.simulated
        return SimulatedChat(
            first_token_ms=sim.first_ms,
            tokens_per_s=sim.tokens_per_s,
            jitter=sim.jitter,
            seed=sim.seed,
        )
    return build_llama(args, cache_dir)


def build_llama(args: LlmArgs, cache_dir: Path) -> LlamaChat:
    """The embedded model (also the tool router's: it decodes under a grammar)."""
    model = LlamaChat(
        model_files.llm_gguf(cache_dir),
        n_threads=args.n_threads,
        n_ctx=args.n_ctx,
        kv_cache_mb=args.kv_cache_mb,
        timeout_s=args.timeout_s,
    )
    model.warm(args.system_prompt)
    return model


def build_tts(args: TtsArgs) -> TtsProvider:
    if args.provider == "simulated":
        sim = args.simulated
        return SimulatedTTS(first_audio_ms=sim.first_ms, jitter=sim.jitter, seed=sim.seed)
    model_path, config_path = model_files.piper_voice()
    return PiperTTS(
        model_path,
        config_path,
        intra_op_threads=args.intra_op_threads,
        length_scale=args.length_scale,
        timeout_s=args.timeout_s,
    )
