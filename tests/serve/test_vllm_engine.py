"""The vLLM engine's side of the protocol, against a stand-in for `vllm serve` (vllm_standin.py
says what it is and is not): the same answers as the embedded engine, adapters registered and
unregistered at run time, the managed server's start and stop, and clear errors."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from node.serve.engine import AdapterRefusedError, EngineError, Finished, GenerationRequest, SamplingParams
from node.serve.peft_engine import PeftEngine
from node.serve.vllm_engine import VllmEngine, VllmSettings
from tests.serve.conftest import handle, live_server, local_services, make_adapter
from tests.serve.vllm_standin import create_standin

STANDIN = f"{sys.executable} {Path(__file__).with_name('vllm_standin.py')}"
PROMPTS = ["The capital of", "Once upon a time", "1 2 3 4"]


def _answers(engine: Any, handles: list[Any], tokens: int = 8) -> list[Finished]:
    async def run() -> list[Finished]:
        out = []
        try:
            for h in handles:
                for p in PROMPTS:
                    req = GenerationRequest(model=h, prompt=p, params=SamplingParams(max_tokens=tokens, temperature=0))
                    out.extend([ev async for ev in await engine.stream(req) if isinstance(ev, Finished)])
        finally:
            await engine.close()
        return out

    return asyncio.run(run())


@pytest.fixture(scope="module")
def standin(tiny_base_model: Path, tiny_hash: str) -> Any:
    app = create_standin(tiny_base_model, tiny_hash, api_key="sk-vllm-test", max_lora_rank=8)
    with live_server(app) as url:
        yield url, app


def test_answers_equal_the_embedded_engines_for_the_base_and_each_adapter(
    standin: Any, tiny_base_model: Path, tiny_hash: str, tiny_adapters: list[Path]
) -> None:
    url, app = standin
    handles = [handle(tiny_base_model, tiny_hash)] + [
        handle(tiny_base_model, tiny_hash, a, f"m{i}") for i, a in enumerate(tiny_adapters[:2])
    ]
    ours = _answers(PeftEngine(device="cpu"), handles)
    theirs = _answers(VllmEngine(VllmSettings(url=url, api_key="sk-vllm-test")), handles)
    assert [f.text for f in theirs] == [f.text for f in ours]
    assert [f.completion_ids for f in theirs] == [f.completion_ids for f in ours]
    assert [f.prompt_ids for f in theirs] == [f.prompt_ids for f in ours]
    assert all(f.completion_tokens == len(f.completion_ids) for f in theirs)
    # Adapters answer differently from the base (so the adapter really was the one used).
    assert [f.text for f in theirs[:3]] != [f.text for f in theirs[3:6]]
    # The prompt went as token ids, with token ids asked back, and the sampling settings.
    body = app.state.requests[-1]
    assert body["prompt"] == theirs[-1].prompt_ids and body["return_token_ids"] is True
    assert body["temperature"] == 0 and body["max_tokens"] == 8 and body["model"] == "m1"


def test_adapters_are_unregistered_least_recently_used_past_the_limit(
    standin: Any, tiny_base_model: Path, tiny_hash: str, tiny_adapters: list[Path]
) -> None:
    url, app = standin
    app.state.loras.clear()
    engine = VllmEngine(VllmSettings(url=url, api_key="sk-vllm-test", max_adapters=2))
    handles = [handle(tiny_base_model, tiny_hash, a, f"lru{i}") for i, a in enumerate(tiny_adapters)]

    async def run() -> list[list[str]]:
        seen = []
        try:
            for h in [handles[0], handles[1], handles[0], handles[2]]:
                req = GenerationRequest(model=h, prompt="hi", params=SamplingParams(max_tokens=2, temperature=0))
                async for _ in await engine.stream(req):
                    pass
                seen.append(sorted(app.state.loras))
        finally:
            await engine.close()
        return seen

    seen = asyncio.run(run())
    # lru1 was used least recently when lru2 came: it went, from the server and from the engine.
    assert seen == [["lru0"], ["lru0", "lru1"], ["lru0", "lru1"], ["lru0", "lru2"]]


def test_an_adapter_over_the_servers_rank_is_refused_before_it_reaches_vllm(
    standin: Any, tiny_base_model: Path, tiny_hash: str, tmp_path: Path
) -> None:
    url, app = standin
    wide = make_adapter(tiny_base_model, tmp_path / "wide", seed=5, r=16)
    engine = VllmEngine(VllmSettings(url=url, api_key="sk-vllm-test", max_lora_rank=8))
    h = handle(tiny_base_model, tiny_hash, wide, "wide")
    with pytest.raises(AdapterRefusedError, match="rank 16 is over this server's cap of 8"):
        _answers(engine, [h])
    assert "wide" not in app.state.loras


def test_a_server_of_another_base_or_with_another_key_is_refused_with_the_fix(
    standin: Any, tiny_base_model: Path
) -> None:
    url, _ = standin
    other = handle(tiny_base_model.parent / "elsewhere", "0x" + "ab" * 32)
    with pytest.raises(EngineError, match=r"--served-model-name 0xabab.* --enable-lora"):
        _answers(VllmEngine(VllmSettings(url=url, api_key="sk-vllm-test")), [other])
    with pytest.raises(EngineError, match="wants an API key: set DATANET_SERVE_VLLM_API_KEY"):
        _answers(VllmEngine(VllmSettings(url=url, api_key="wrong")), [other])


def test_a_server_that_is_down_is_a_clear_engine_error(tiny_base_model: Path, tiny_hash: str) -> None:
    from node.chain.devchain import free_port

    engine = VllmEngine(VllmSettings(url=f"http://127.0.0.1:{free_port()}"))
    with pytest.raises(EngineError, match=r"did not answer .*is it running"):
        _answers(engine, [handle(tiny_base_model, tiny_hash)])


def test_the_managed_server_starts_per_base_answers_and_stops_at_close(
    tiny_base_model: Path, tiny_hash: str, tiny_adapters: list[Path], tmp_path: Path
) -> None:
    engine = VllmEngine(VllmSettings(command=STANDIN, max_lora_rank=8, log_dir=tmp_path))
    h = handle(tiny_base_model, tiny_hash, tiny_adapters[0], "managed")

    async def run() -> tuple[Finished, Any]:
        req = GenerationRequest(model=h, prompt=PROMPTS[0], params=SamplingParams(max_tokens=4, temperature=0))
        events = [ev async for ev in await engine.stream(req)]
        done = events[-1]
        assert isinstance(done, Finished)
        server = engine._servers[tiny_hash]
        assert server.process is not None and server.process.poll() is None
        await engine.close()
        return done, server.process

    done, process = asyncio.run(run())
    want = _answers(PeftEngine(device="cpu"), [h], tokens=4)[0]
    assert done.text == want.text and done.completion_ids == want.completion_ids
    # The adapter loaded at run time: the stand-in, like vLLM, has that route only when the engine
    # set VLLM_ALLOW_RUNTIME_LORA_UPDATING=True; the API key came by VLLM_API_KEY.
    assert process.poll() is not None, "close() must stop the vLLM server it started"
    assert (tmp_path / f"vllm-{tiny_hash[2:14]}.log").is_file()


def test_a_managed_server_that_fails_to_start_reports_its_log(tiny_base_model: Path, tiny_hash: str,
                                                              tmp_path: Path) -> None:  # fmt: skip
    crash = f"{sys.executable} -c \"import sys; print('CUDA out of memory'); sys.exit(3)\""
    engine = VllmEngine(VllmSettings(command=crash, log_dir=tmp_path))
    with pytest.raises(EngineError, match=r"(?s)exited with status 3 while starting.*CUDA out of memory"):
        _answers(engine, [handle(tiny_base_model, tiny_hash)])
    missing = VllmEngine(VllmSettings(command=str(tmp_path / "no-vllm-here"), log_dir=tmp_path))
    with pytest.raises(EngineError, match=r"could not start vLLM .*--vllm-command"):
        _answers(missing, [handle(tiny_base_model, tiny_hash)])


def test_the_api_serves_registry_models_through_vllm(
    standin: Any, tiny_base_model: Path, tiny_hash: str, tiny_adapters: list[Path], tmp_path: Path
) -> None:
    """The whole server with `--engine vllm`: the openai SDK's stream, the registry's adapter
    fetched, verified and registered with vLLM, the same answer as with the embedded engine."""
    import openai

    from node.serve.app import create_app

    url, app = standin
    answers = []
    for engine in ("peft", "vllm"):
        services, key = local_services(tmp_path / engine, tiny_base_model, tiny_hash, tiny_adapters[:1],
                                       engine=engine, vllm_url=url)  # fmt: skip
        if engine == "vllm":
            services.engine = VllmEngine(VllmSettings(url=url, api_key="sk-vllm-test"))
        with live_server(create_app(services)) as api:
            client = openai.OpenAI(base_url=api + "/v1", api_key=key)
            stream = client.chat.completions.create(
                model="datanet-1", messages=[{"role": "user", "content": "Tell me a fact"}], max_tokens=8,
                temperature=0, stream=True, stream_options={"include_usage": True},
            )  # fmt: skip
            chunks = list(stream)
            answers.append("".join(c.choices[0].delta.content or "" for c in chunks if c.choices))
            assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens >= 1
    assert answers[0] == answers[1] and answers[0]
    asked = app.state.requests[-1]["model"]  # the adapter's name on the vLLM server, not the base's
    assert asked != tiny_hash and asked in app.state.loras


def test_a_name_an_attached_server_already_holds_for_another_adapter_is_replaced(
    standin: Any, tiny_base_model: Path, tiny_hash: str, tiny_adapters: list[Path]
) -> None:
    """vLLM outlives the node: after a restart (or a node on another chain) the name `m7` may
    stand for a different adapter there. Same directory: kept; another: unloaded and loaded."""
    url, app = standin
    first = handle(tiny_base_model, tiny_hash, tiny_adapters[0], "m7")
    second = handle(tiny_base_model, tiny_hash, tiny_adapters[1], "m7")
    _answers(VllmEngine(VllmSettings(url=url, api_key="sk-vllm-test")), [first])
    assert app.state.loras["m7"] == str(tiny_adapters[0].resolve())
    got = _answers(VllmEngine(VllmSettings(url=url, api_key="sk-vllm-test")), [second])
    assert app.state.loras["m7"] == str(tiny_adapters[1].resolve())
    want = _answers(PeftEngine(device="cpu"), [second])
    assert [f.text for f in got] == [f.text for f in want]


def test_vllms_own_refusals_map_to_the_apis_errors() -> None:
    from node.serve.engine import InputTooLongError
    from node.serve.vllm_engine import _refusal

    body = (b'{"error": {"message": "This model\'s maximum context length is 2048 tokens. However, you requested '
            b'2100 tokens.", "type": "BadRequestError", "param": null, "code": 400}}')  # fmt: skip
    assert isinstance(_refusal(400, body, "u"), InputTooLongError)
    old_shape = b'{"object": "error", "message": "boom", "type": "InternalServerError", "code": 500}'
    e = _refusal(500, old_shape, "http://v")
    assert isinstance(e, EngineError) and "answered 500: boom" in str(e)


@pytest.mark.skipif(
    not (os.environ.get("DATANET_VLLM_REAL") and os.environ.get("VLLM_COMMAND")),
    reason="needs a GPU and a real vLLM (scripts/gpu/vllm_check.sh sets DATANET_VLLM_REAL=1 and VLLM_COMMAND)",
)
def test_a_real_vllm_server_serves_the_base_and_adapters(tmp_path: Path) -> None:
    """The same engine against the real `vllm serve` on SmolLM2 (run by scripts/gpu/vllm_check.sh)."""
    from node.config import Settings
    from node.train.base_model import resolve_base_model, weights_hash
    from node.train.smollm2 import SMOLLM2

    base_dir = resolve_base_model(SMOLLM2, Settings().models_path)
    base_hash = "0x" + weights_hash(base_dir).hex()
    adapters = [make_adapter(base_dir, tmp_path / f"a{i}", seed=i, r=8) for i in range(3)]
    engine = VllmEngine(VllmSettings(command=os.environ["VLLM_COMMAND"], max_adapters=2, max_lora_rank=8,
                                     gpu_memory_utilization=0.4, log_dir=tmp_path))  # fmt: skip
    handles = [handle(base_dir, base_hash)] + [handle(base_dir, base_hash, a, f"m{i}") for i, a in enumerate(adapters)]
    got = _answers(engine, handles, tokens=16)
    assert all(f.completion_ids and f.prompt_ids and f.completion_tokens == len(f.completion_ids) for f in got)
    assert [f.text for f in got[:3]] != [f.text for f in got[3:6]]  # an adapter changes the answers
    assert all(f.finish_reason in ("stop", "length") for f in got)


def test_serve_settings_choose_the_vllm_mode(tmp_path: Path) -> None:
    """`--engine vllm` with `--vllm-command` manages servers (logs under the data dir); with only a
    URL it attaches; a rank vLLM does not offer is a one-line config error."""
    from node.config import Settings
    from node.errors import ConfigError
    from node.serve.config import ServeSettings
    from node.serve.runtime import build_engine

    node = Settings(data_dir=tmp_path / ".datanet")
    managed = build_engine(ServeSettings(engine="vllm", vllm_command=STANDIN, max_adapters=3), node)
    assert isinstance(managed, VllmEngine) and managed.settings.url is None
    assert managed.settings.command == STANDIN and managed.settings.max_adapters == 3
    assert managed.settings.log_dir == tmp_path / ".datanet" / "serve" / "vllm"
    attached = build_engine(ServeSettings(engine="vllm", vllm_url="http://127.0.0.1:9"), node)
    assert isinstance(attached, VllmEngine) and attached.settings.url == "http://127.0.0.1:9"
    with pytest.raises(ConfigError, match=r"--engine vllm: max_lora_rank must be one of vLLM's"):
        build_engine(ServeSettings(engine="vllm", vllm_max_lora_rank=12), node)


def test_a_managed_server_that_dies_is_started_again_with_its_adapters(
    tiny_base_model: Path, tiny_hash: str, tiny_adapters: list[Path], tmp_path: Path
) -> None:
    import signal

    engine = VllmEngine(VllmSettings(command=STANDIN, max_lora_rank=8, log_dir=tmp_path))
    h = handle(tiny_base_model, tiny_hash, tiny_adapters[1], "again")
    req = GenerationRequest(model=h, prompt=PROMPTS[1], params=SamplingParams(max_tokens=4, temperature=0))

    async def run() -> tuple[list[Finished], int, int]:
        try:
            first = [ev async for ev in await engine.stream(req) if isinstance(ev, Finished)]
            dead = engine._servers[tiny_hash].process
            assert dead is not None
            os.killpg(dead.pid, signal.SIGKILL)  # as the OOM killer would
            dead.wait(30)
            second = [ev async for ev in await engine.stream(req) if isinstance(ev, Finished)]
            fresh = engine._servers[tiny_hash].process
            assert fresh is not None and fresh.poll() is None
            return first + second, dead.pid, fresh.pid
        finally:
            await engine.close()

    answers, old_pid, new_pid = asyncio.run(run())
    want = _answers(PeftEngine(device="cpu"), [h], tokens=4)[1]  # PROMPTS[1] with the adapter
    assert new_pid != old_pid and answers[0].text == answers[1].text == want.text  # the adapter registered again
