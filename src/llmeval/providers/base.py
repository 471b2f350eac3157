"""The provider contract shared by every model backend."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class GenerationRequest:
    """A generation request: the prompt and the sampling parameters."""

    prompt: str
    system_prompt: str = ""
    max_new_tokens: int = 256
    temperature: float = 0.7
    seed: int | None = None

    def messages(self) -> list[dict[str, str]]:
        """Build the chat messages: an optional system message, then the user prompt."""
        messages = []
        if self.system_prompt:
            messages.append({"role": "system", "content": self.system_prompt})
        messages.append({"role": "user", "content": self.prompt})
        return messages


@dataclass(frozen=True, slots=True)
class Generation:
    """A model's response with its token usage and timing."""

    text: str
    input_tokens: int | None
    output_tokens: int | None
    latency_ms: int
    finish_reason: str = ""
    request_id: str = ""
    # The sampling seed actually used, when the provider chose one.
    seed: int | None = None


class Provider(ABC):
    """A model backend.

    ``generate`` blocks until the model has responded. It returns a ``Generation``
    or raises ``ProviderError`` whose ``permanent`` flag tells the caller whether
    a retry can succeed. It must not touch the database.
    """

    @abstractmethod
    def generate(self, request: GenerationRequest) -> Generation: ...
