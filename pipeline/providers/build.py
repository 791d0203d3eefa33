"""Build providers from config. The only place that knows which implementation backs a stage.

Cloud SDKs are imported only when their provider is selected; their keys come from the
environment (`Settings`), and a selected provider without its key fails with a message
naming the variable.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from pipeline.config import LlmArgs, Settings, SttArgs, TtsArgs
from pipeline.providers import model_files
from pipeline.providers.base import ChatProvider, SttProvider, TtsProvider
from pipeline.providers.fallback import FallbackChat, FallbackSTT, FallbackTTS
from pipeline.providers.llama import LlamaChat
from pipeline.providers.piper import PiperTTS
from pipeline.providers.simulated import (
    SimulatedChat,
    SimulatedSTT,
    SimulatedSttStreams,
    SimulatedTTS,
    SimulatedTtsStreams,
)
from pipeline.providers.streams import LiveStt, SttStreams, TtsStreams
from pipeline.providers.whisper import WhisperSTT
from pipeline.tools.open import local_router
from pipeline.tools.policy import Tools
from pipeline.tools.registry import ToolRegistry
from pipeline.tools.router import StructuredModel


def build_stt(args: SttArgs, cache_dir: Path) -> SttProvider:
    if args.fallback:
        chain = [args.provider, *args.fallback]
        return FallbackSTT(
            [_stt(args.model_copy(update={"provider": p}), cache_dir) for p in chain]
        )
    return _stt(args, cache_dir)


def _stt(args: SttArgs, cache_dir: Path) -> SttProvider:
    if args.provider == "simulated":
        sim = args.simulated
        return SimulatedSTT(final_ms=sim.first_ms, jitter=sim.jitter, seed=sim.seed)
    if args.provider == "deepgram":
        from pipeline.providers.deepgram import DeepgramSTT

        env = Settings()
        return DeepgramSTT(
            api_key=env.key("DEEPGRAM_API_KEY"),
            base_url=env.deepgram_base_url,
            model=args.deepgram.model,
            language=args.deepgram.language,
            timeout_s=args.timeout_s,
        )
    if args.provider == "moonshine":
        from pipeline.providers.moonshine import MoonshineSTT

        return MoonshineSTT(
            model_files.moonshine_dir(), cpu_threads=args.cpu_threads, timeout_s=args.timeout_s
        )
    return WhisperSTT(
        model_files.whisper_dir(args.model, cache_dir),
        cpu_threads=args.cpu_threads,
        beam_size=args.beam_size,
        vocabulary=args.vocabulary,
        window_s=args.window_s,
        timeout_s=args.timeout_s,
    )


def build_chat(args: LlmArgs, cache_dir: Path) -> ChatProvider:
    if args.fallback:
        chain = [args.provider, *args.fallback]
        return FallbackChat(
            [_chat(args.model_copy(update={"provider": p}), cache_dir) for p in chain]
        )
    return _chat(args, cache_dir)


def _chat(args: LlmArgs, cache_dir: Path) -> ChatProvider:
    if args.provider == "openai":
        from pipeline.providers.openai_chat import OpenAIChat

        env = Settings()
        return OpenAIChat(
            api_key=env.key("OPENAI_API_KEY"),
            base_url=env.openai_base_url,
            model=args.openai.model,
            timeout_s=args.timeout_s,
            max_retries=args.openai.max_retries,
        )
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


def build_tool_router(args: LlmArgs, model: ChatProvider) -> Callable[[ToolRegistry], Tools] | None:
    """How this LLM picks tools: OpenAI's tool calling, the local model's grammar-constrained
    router, or (a model that can do neither) None. The tool policy is the same for all."""
    if args.provider == "openai":
        from pipeline.providers.openai_chat import OpenAIToolRouter

        env = Settings()
        key, url = env.key("OPENAI_API_KEY"), env.openai_base_url

        def openai_router(registry: ToolRegistry) -> Tools:
            return OpenAIToolRouter(registry, api_key=key, base_url=url, model=args.openai.model)

        return openai_router
    if isinstance(model, StructuredModel):
        return local_router(model)
    return None


def build_tts(args: TtsArgs) -> TtsProvider:
    if args.fallback:
        chain = [args.provider, *args.fallback]
        return FallbackTTS([_tts(args.model_copy(update={"provider": p})) for p in chain])
    return _tts(args)


def _tts(args: TtsArgs) -> TtsProvider:
    if args.provider == "simulated":
        sim = args.simulated
        return SimulatedTTS(first_audio_ms=sim.first_ms, jitter=sim.jitter, seed=sim.seed)
    if args.provider == "elevenlabs":
        from pipeline.providers.elevenlabs import ElevenLabsTTS

        env = Settings()
        el = args.elevenlabs
        return ElevenLabsTTS(
            api_key=env.key("ELEVENLABS_API_KEY"),
            base_url=env.elevenlabs_base_url,
            voice_id=el.voice_id,
            model_id=el.model_id,
            sample_rate=el.sample_rate,
            timeout_s=args.timeout_s,
        )
    model_path, config_path = model_files.piper_voice()
    return PiperTTS(
        model_path,
        config_path,
        intra_op_threads=args.intra_op_threads,
        length_scale=args.length_scale,
        timeout_s=args.timeout_s,
    )


def build_stt_stream(args: SttArgs) -> LiveStt | None:
    """The live STT streams the ingress opens per voice session, or None (`stt.streaming`
    off): sessions then transcribe whole utterances through the `stt` stage."""
    live = args.streaming
    if not live.enabled:
        return None
    return LiveStt(
        _stt_streams(args),
        end_of_turn=live.end_of_turn,
        finalize_timeout_s=live.finalize_timeout_s,
        endpoint_grace_s=live.endpoint_grace_ms / 1000,
        reopen_backoff_s=(live.reopen_backoff_s, live.reopen_backoff_max_s),
    )


def _stt_streams(args: SttArgs) -> SttStreams:
    live = args.streaming
    endpointing = live.end_of_turn == "endpointing"
    if args.provider == "simulated":
        sim = args.simulated
        return SimulatedSttStreams(
            final_ms=sim.first_ms,
            interim_ms=live.interim_ms,
            endpointing_ms=live.endpointing_ms if endpointing else None,
            utterance_end_ms=live.utterance_end_ms if endpointing else None,
            jitter=sim.jitter,
            seed=sim.seed,
        )
    from pipeline.providers.deepgram import DeepgramLiveStreams

    env = Settings()
    return DeepgramLiveStreams(
        api_key=env.key("DEEPGRAM_API_KEY"),
        base_url=env.deepgram_base_url,
        model=args.deepgram.model,
        language=args.deepgram.language,
        # In vad mode Deepgram's endpointing stays off: our Finalize ends the turn, and a
        # speech_final mid-utterance would only split the text into more finals.
        endpointing_ms=live.endpointing_ms if endpointing else None,
        utterance_end_ms=live.utterance_end_ms if endpointing else None,
        keepalive_s=live.keepalive_s,
    )


def build_tts_stream(args: TtsArgs) -> TtsStreams | None:
    """The TTS streams of one ingress process (one per reply; ElevenLabs' sockets are pooled
    and shared by every session of the process), or None (`tts.streaming` off): replies are
    then spoken clause by clause through the `tts` stage."""
    if not args.streaming.enabled:
        return None
    if args.provider == "simulated":
        sim = args.simulated
        return SimulatedTtsStreams(
            first_audio_ms=sim.first_ms,
            speed=args.streaming.speed,
            jitter=sim.jitter,
            seed=sim.seed,
        )
    from pipeline.providers.elevenlabs import ElevenLabsSocketPool, ElevenLabsStreams

    env = Settings()
    el = args.elevenlabs
    pool = ElevenLabsSocketPool(
        api_key=env.key("ELEVENLABS_API_KEY"),
        base_url=env.elevenlabs_base_url,
        voice_id=el.voice_id,
        model_id=el.model_id,
        sample_rate=el.sample_rate,
        max_sockets=args.streaming.max_sockets,
        audio_timeout_s=args.timeout_s,
    )
    return ElevenLabsStreams(pool)
