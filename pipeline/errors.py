"""One error family. Each carries the HTTP status the ingress answers with."""

from __future__ import annotations


class JarvisError(Exception):
    """Base of every error the service raises on purpose."""

    status_code = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadInputError(JarvisError):
    """The client sent something we cannot use; the message says what."""

    status_code = 400


class PayloadTooLargeError(JarvisError):
    status_code = 413


class AuthError(JarvisError):
    status_code = 401


class NotFoundError(JarvisError):
    status_code = 404


class NotReadyError(JarvisError):
    status_code = 503


class ProviderError(JarvisError):
    """A model or cloud provider failed; the message names the provider."""

    status_code = 502

    def __init__(self, message: str, *, provider: str) -> None:
        super().__init__(f"{provider}: {message}")
        self.provider = provider


class ConfigError(JarvisError):
    """The configuration cannot work (a selected provider without its key): the deploy fails."""

    status_code = 500


class TransientProviderError(ProviderError):
    """A failure that may pass (a timeout, 408/409/429, 5xx, a dropped or refused connection):
    the same request may succeed later or on another provider. Other `ProviderError`s would
    fail again. The one retryable error of every provider; `status` is the provider's HTTP
    status when there was one."""

    status_code = 503

    def __init__(self, message: str, *, provider: str, status: int | None = None) -> None:
        super().__init__(message, provider=provider)
        self.status = status


class StageUnavailableError(JarvisError):
    """A stage's replica was lost under a call (killed, out of memory, its node gone): the
    call may or may not have run there. Serve replaces the replica; the same request can be
    made again. `stage` is "stt", "llm" or "tts"."""

    status_code = 503

    def __init__(self, stage: str) -> None:
        super().__init__(f"{stage}: the stage's replica was lost mid-call; try again")
        self.stage = stage


class OverloadedError(JarvisError):
    """This server is at its limit (sessions or requests in flight on an ingress replica, or
    a stage's queue full): nothing was done; the same request can be made again after
    `retry_after_s` seconds (HTTP `Retry-After`)."""

    status_code = 503

    def __init__(self, message: str, *, retry_after_s: int = 2) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class ModelFileError(JarvisError):
    """Model files are missing or do not match their pinned checksum."""

    status_code = 503


class SpeculativeWriteRefused(JarvisError):
    """The turn would change company data, but its transcript is speculative (the user may
    still be speaking): the caller asks again once the turn has ended."""

    status_code = 409
