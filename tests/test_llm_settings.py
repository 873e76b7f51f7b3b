"""One LLM settings model: a scenario's ``llm:`` section and the service's configuration."""

import subprocess
import sys

import pytest
from pydantic import BaseModel, ValidationError

from recworld.simulator.llm import service as service_module
from recworld.simulator.llm.service import LLMService, cache_key, compact_grammar, closed_schema, service_from_scenario
from recworld.simulator.llm.settings import LLMSettings
from recworld.simulator.scenario import LLMSection, Scenario, ScenarioError, SessionConfig, load_scenario


class Pick(BaseModel):
    watch: list[int]


MSG = [{"role": "user", "content": "Pick."}]


def test_one_model_with_the_scenario_defaults():
    assert LLMSection is LLMSettings and isinstance(Scenario().llm, LLMSettings)
    s = LLMSettings()
    assert (s.model, s.max_tokens, s.timeout_s, s.constrain, s.temperature) == ("embedded", 160, 120.0, "auto", 0.7)
    assert (s.audit, s.breaker_failures, s.breaker_cooldown_s) == (True, 5, 30.0)
    assert not hasattr(service_module, "LLMConfig")
    with pytest.raises(ValidationError):
        LLMSettings(no_such_setting=1)
    with pytest.raises(ValidationError, match="unknown embedded model"):
        LLMSettings(embedded_model="nope")


def test_importing_the_settings_does_not_import_litellm():
    code = ("import sys; import recworld.simulator.llm.settings, recworld.simulator.scenario; "
            "sys.exit('litellm' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_session_chat_turns_is_gone():
    assert "chat_turns" not in SessionConfig.model_fields
    with pytest.raises(ScenarioError, match="chat_turns"):
        load_scenario({"session": {"chat_turns": 4}})


def test_the_service_takes_settings_or_a_dict_and_resolves_auto():
    url = "http://127.0.0.1:9/v1"
    for given in ({"model": "openai/x", "api_base": url, "cache": False},
                  LLMSettings(model="openai/x", api_base=url, cache=False)):
        svc = LLMService(given)
        assert isinstance(svc.settings, LLMSettings) and svc.settings.constrain == "auto"
        assert svc.config.constrain == "json_schema" and svc.config.model == "openai/x" and svc.server is None
        assert svc._params(Pick)["response_format"]["json_schema"]["schema"] == closed_schema(Pick)
    svc = service_from_scenario(load_scenario({"llm": {"model": "openai/x", "api_base": url, "cache": False,
                                                       "constrain": "none"}}).llm)
    assert svc.config.constrain == "none" and svc._params(Pick) == {"temperature": 0.7, "max_tokens": 160}


class FakeEmbedded:
    started: list = []

    def __init__(self, name, parallel=4, threads=2):
        self.name, self.parallel, self.threads = name, parallel, threads
        self.model, self.api_base, self.running = f"openai/{name}", "http://127.0.0.1:1/v1", False

    def start(self):
        self.running = True
        FakeEmbedded.started.append(self)
        return self

    def stop(self):
        self.running = False


def test_embedded_is_resolved_as_before_and_keeps_the_cache_keys(monkeypatch, tmp_path):
    import recworld.simulator.llm.embedded as embedded

    monkeypatch.setattr(embedded, "EmbeddedLLM", FakeEmbedded)
    scn = load_scenario({"llm": {"server_slots": 3, "server_threads": 1, "cache_path": str(tmp_path / "c.sqlite")}})
    svc = service_from_scenario(scn.llm)
    server = FakeEmbedded.started[-1]
    assert (server.name, server.parallel, server.threads, server.running) == ("gemma-3-270m", 3, 1, True)
    cfg = svc.config
    assert (cfg.model, cfg.api_base, cfg.constrain) == (server.model, server.api_base, "llguidance")
    assert cfg.input_cost_per_token == 0.0 and cfg.output_cost_per_token == 0.0
    assert svc.settings.model == "embedded" and scn.llm.model == "embedded"      # the scenario is untouched
    # the key a scenario's request always had: the server's model name, temperature, max_tokens, grammar
    params = svc._params(Pick)
    assert params == {"temperature": 0.7, "max_tokens": 160, "extra_body": {"grammar": compact_grammar(Pick)}}
    assert cache_key(cfg.model, MSG, params, 1) == cache_key(
        "openai/gemma-3-270m", MSG, {"temperature": 0.7, "max_tokens": 160,
                                     "extra_body": {"grammar": compact_grammar(Pick)}}, 1)
    svc.close()
    assert not server.running and svc.server is None


def test_a_failing_service_start_stops_the_embedded_server(monkeypatch, tmp_path):
    import recworld.simulator.llm.embedded as embedded

    monkeypatch.setattr(embedded, "EmbeddedLLM", FakeEmbedded)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OSError):                    # the cache cannot live under a file
        LLMService({"cache_path": str(blocker / "c.sqlite")})
    assert not FakeEmbedded.started[-1].running


def test_missing_key_is_checked_before_any_server_starts(monkeypatch):
    import recworld.simulator.llm.embedded as embedded

    monkeypatch.setattr(embedded, "EmbeddedLLM", FakeEmbedded)
    n = len(FakeEmbedded.started)
    with pytest.raises(ValueError, match="NO_SUCH_VAR"):
        LLMService({"api_key_env": "NO_SUCH_VAR"})
    assert len(FakeEmbedded.started) == n
