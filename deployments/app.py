"""The application graph. `serve run serve_config.yaml` calls `build_app` with typed args."""


from ray.serve import Application

from deployments.ingress import Ingress
from deployments.llm import LLMOrchestrator
from deployments.stt import SpeechToText
from deployments.tts import TextToSpeech
from pipeline.config import AppArgs


def build_app(args: AppArgs) -> Application:
    return Ingress.bind(
        SpeechToText.bind(args.stt),
        LLMOrchestrator.bind(args.llm),
        TextToSpeech.bind(args.tts),
        args.limits,
    )
