"""The settings of the LLM service: one pydantic model for scenarios and the service.

Light on purpose: pydantic only (importing it must not import litellm).  A scenario's
``llm:`` section is an ``LLMSettings``; ``LLMService`` takes one (or a dict validated
into one) and resolves ``model: embedded`` and ``constrain: auto`` itself.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class LLMSettings(BaseModel):
    """The one LLM service of a world (used by LLM brains and LLM recommenders).

    ``model: embedded`` starts the packaged local model on a loopback llama.cpp server
    (``pip install "recworld[local]"``; offline, no key). Any other value is a litellm model
    name, e.g. ``gpt-4o-mini`` (key from ``api_key_env``) or ``openai/NAME`` with ``api_base``.
    """
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    model: str = Field("embedded", min_length=1, description="'embedded' or a litellm model name")
    embedded_model: str = Field("gemma-3-270m", description=(
        "the packaged model the embedded server loads: gemma-3-270m (the 'local' extra; tiny, for tests), "
        "qwen2.5-coder-1.5b (the 'local-quality' extra, 1.1 GB; follows its persona, docs/models.md) "
        "or smollm2-135m"))

    @field_validator("embedded_model")
    @classmethod
    def _known_model(cls, v: str) -> str:
        from recworld.simulator.llm.embedded import MODELS          # stdlib only: cheap

        if v not in MODELS:
            raise ValueError(f"unknown embedded model; known: {', '.join(MODELS)}")
        return v
    server_slots: int = Field(4, ge=1, le=64, description="embedded server: requests decoded together")
    server_threads: int = Field(2, ge=1, le=256, description="embedded server: CPU threads")
    api_base: str | list[str] | None = Field(None, description=(
        "the server's URL; a list of URLs serving the same model spreads the calls over them (litellm's Router)"))

    @field_validator("api_base")
    @classmethod
    def _endpoints(cls, v):
        if isinstance(v, list):
            if not v:
                raise ValueError("give at least one URL (or null for the provider's default endpoint)")
            if len(set(v)) != len(v):
                raise ValueError("the URLs repeat")
            if len(v) == 1:
                return v[0]
        return v
    api_key_env: str | None = Field(None, description="environment variable holding the API key (never logged)")
    temperature: float = Field(0.7, ge=0, le=2)
    max_tokens: int = Field(160, ge=1, le=32_768)
    timeout_s: float = Field(120.0, gt=0, le=3600)
    max_concurrency: int = Field(8, ge=1, le=1024, description="requests in flight at once")
    retries: int = Field(3, ge=0, le=20)
    backoff_s: float = Field(0.5, ge=0, le=60)
    cache: bool = True
    cache_path: str | None = Field(None, description="SQLite response cache (default ~/.cache/recworld/llm_cache.sqlite)")
    constrain: Literal["auto", "json_schema", "llguidance", "none"] = Field("auto", description=(
        "auto = llguidance grammar on the embedded server, the OpenAI json_schema response format elsewhere"))
    input_cost_per_token: float | None = Field(None, ge=0)
    output_cost_per_token: float | None = Field(None, ge=0)
    max_fallback_rate: float = Field(0.05, ge=0, le=1, description=(
        "a run whose LLM requests (or LLM decisions) fall back more often than this ends 'degraded'"))
    audit: bool = Field(True, description=(
        "llm_calls.jsonl keeps each call's messages and answer (API key scrubbed); false = prompt hash only"))
    breaker_failures: int = Field(5, ge=1, le=100_000, description=(
        "consecutive failed calls that open the circuit (further requests fall back at once)"))
    breaker_cooldown_s: float = Field(30.0, ge=0, le=86_400, description=(
        "seconds the circuit stays open before one probe request is let through"))
