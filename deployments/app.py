"""The application graph. `serve run serve_config.yaml` calls `build_app` with typed args."""

from typing import cast

from ray.serve import Application, Deployment

from deployments.ingress import Ingress
from deployments.llm import LLMOrchestrator
from deployments.stt import SpeechToText
from deployments.tts import TextToSpeech
from pipeline.config import AppArgs


def _deployment(cls: object) -> Deployment:
    return cast(Deployment, cls)  # @serve.deployment's type hints keep the class type


def build_app(args: AppArgs) -> Application:
    return _deployment(Ingress).bind(
        _deployment(SpeechToText).bind(args.stt),
        _deployment(LLMOrchestrator).bind(args.llm, args.cache),
        _deployment(TextToSpeech).bind(args.tts, args.cache),
        args,
    )
