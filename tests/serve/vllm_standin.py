"""A stand-in for `vllm serve --enable-lora`: the part of vLLM's HTTP API the vLLM engine uses,
answered by our own PEFT engine over a real model and real adapters.

It is not vLLM, and these tests do not show vLLM's behaviour (batching, speed, its LoRA kernels):
vLLM needs a CUDA GPU and a torch of its own, neither of which CI has. What it lets CI check is
our side of the protocol, with vLLM's request and response shapes (vLLM's
`entrypoints/openai/completion/protocol.py` and `models/protocol.py`): token-id prompts,
`return_token_ids`, streaming with `stream_options.include_usage`, run-time adapter loading
(only with `VLLM_ALLOW_RUNTIME_LORA_UPDATING=True`, as in vLLM), unloading, the API key from
`VLLM_API_KEY`, `/health`, and vLLM's error bodies. The real server is checked by
`scripts/gpu/vllm_check.sh` on a GPU machine.

Run as `python vllm_standin.py serve BASE_DIR --served-model-name NAME --port P ...` it parses
the flags the engine passes, as the managed mode starts `vllm`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse


def create_standin(
    base_dir: Path, served: str, *, api_key: str | None = None, max_model_len: int | None = None,
    max_lora_rank: int = 16, runtime_lora: bool = True,
) -> FastAPI:  # fmt: skip
    from transformers import AutoConfig, AutoTokenizer

    from node.serve.engine import Finished, GenerationRequest, ModelHandle, SamplingParams
    from node.serve.peft_engine import PeftEngine

    engine = PeftEngine(device="cpu", max_adapters=64)
    tok = AutoTokenizer.from_pretrained(base_dir)
    max_len = max_model_len or int(AutoConfig.from_pretrained(base_dir).max_position_embeddings)
    loras: dict[str, str] = {}
    lora_ids: dict[str, int] = {}  # vLLM's lora_int_id: a new one per registration
    app = FastAPI()
    app.state.loras = loras
    app.state.requests = []  # every completion request's body, for the tests to read

    def error(status: int, message: str, type_: str, param: str | None = None) -> JSONResponse:
        return JSONResponse({"error": {"message": message, "type": type_, "param": param, "code": status}}, status)

    @app.middleware("http")
    async def auth(request: Request, call_next: Any) -> Any:
        wrong = request.headers.get("authorization") != f"Bearer {api_key}"
        if api_key and request.url.path.startswith("/v1") and wrong:
            return JSONResponse({"error": "Unauthorized"}, 401)
        return await call_next(request)

    @app.get("/health")
    async def health() -> PlainTextResponse:
        return PlainTextResponse("")

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        card = {"id": served, "object": "model", "created": int(time.time()), "owned_by": "vllm",
                "root": str(base_dir), "parent": None, "max_model_len": max_len}  # fmt: skip
        adapters = [{"id": n, "object": "model", "created": int(time.time()), "owned_by": "vllm", "root": p,
                     "parent": served, "max_model_len": max_len} for n, p in loras.items()]  # fmt: skip
        return {"object": "list", "data": [card, *adapters]}

    if runtime_lora:

        @app.post("/v1/load_lora_adapter")
        async def load(body: dict[str, Any]) -> Any:
            name, path = body["lora_name"], body["lora_path"]
            if name in loras:
                return error(400, f"The lora adapter '{name}' has already been loaded.", "InvalidUserInput")
            config = json.loads((Path(path) / "adapter_config.json").read_text())
            if int(config["r"]) > max_lora_rank:
                return error(400, f"LoRA rank {config['r']} is greater than max_lora_rank {max_lora_rank}.",
                             "BadRequestError")  # fmt: skip
            loras[name] = path
            lora_ids[name] = len(lora_ids) + 1 + max(lora_ids.values(), default=0)
            return PlainTextResponse(f"Success: LoRA adapter '{name}' added successfully.")

        @app.post("/v1/unload_lora_adapter")
        async def unload(body: dict[str, Any]) -> Any:
            name = body["lora_name"]
            if loras.pop(name, None) is None:
                return error(404, f"The lora adapter '{name}' cannot be found.", "NotFoundError")
            return PlainTextResponse(f"Success: LoRA adapter '{name}' removed successfully.")

    @app.post("/v1/completions")
    async def completions(body: dict[str, Any]) -> Any:
        app.state.requests.append(body)
        name, ids = body.get("model"), body.get("prompt")
        if name != served and name not in loras:
            return error(404, f"The model `{name}` does not exist.", "NotFoundError", "model")
        if not isinstance(ids, list) or not all(isinstance(i, int) for i in ids):
            return error(400, "this stand-in takes token-id prompts only", "BadRequestError", "prompt")
        max_tokens = int(body.get("max_tokens") or 16)
        if len(ids) + max_tokens > max_len:
            return error(400, f"This model's maximum context length is {max_len} tokens. However, you requested "
                         f"{len(ids) + max_tokens} tokens ({len(ids)} in the messages, {max_tokens} in the "
                         "completion). Please reduce the length of the messages or completion.",
                         "BadRequestError", "max_tokens")  # fmt: skip
        adapter = loras.get(name) if name != served else None
        key = f"{name}#{lora_ids[name]}" if adapter else None
        handle = ModelHandle(name=name, base_dir=base_dir, base_hash=served, adapter_key=key,
                             adapter_dir=Path(adapter) if adapter else None)  # fmt: skip
        params = SamplingParams(max_tokens=max_tokens, temperature=body.get("temperature", 1.0),
                                top_p=body.get("top_p", 1.0), stop=tuple(body.get("stop") or ()),
                                seed=body.get("seed"))  # fmt: skip
        request = GenerationRequest(model=handle, prompt=tok.decode(ids), params=params)
        rid, created = f"cmpl-{uuid.uuid4().hex}", int(time.time())
        with_ids = bool(body.get("return_token_ids"))

        def chunk(choices: list[dict[str, Any]], **extra: Any) -> str:
            data = {"id": rid, "object": "text_completion", "created": created, "model": name, "choices": choices}
            return "data: " + json.dumps({**data, **extra}) + "\n\n"

        async def events() -> Any:
            first = True
            async for ev in await engine.stream(request):
                if isinstance(ev, Finished):
                    yield chunk([{"index": 0, "text": "", "finish_reason": ev.finish_reason,
                                  "token_ids": ev.completion_ids if with_ids else None}])  # fmt: skip
                    if (body.get("stream_options") or {}).get("include_usage"):
                        usage = {"prompt_tokens": len(ids), "completion_tokens": ev.completion_tokens,
                                 "total_tokens": len(ids) + ev.completion_tokens}  # fmt: skip
                        yield chunk([], usage=usage)
                    yield "data: [DONE]\n\n"
                    return
                choice: dict[str, Any] = {"index": 0, "text": ev.text, "finish_reason": None}
                if with_ids and first:
                    choice["prompt_token_ids"] = ids
                first = False
                yield chunk([choice])

        if not body.get("stream"):
            return error(400, "this stand-in streams only", "BadRequestError", "stream")
        return StreamingResponse(events(), media_type="text/event-stream")

    return app


def main(argv: list[str]) -> None:
    """`vllm serve`'s command line, as far as the managed engine uses it."""
    import uvicorn

    p = argparse.ArgumentParser(prog="vllm")
    p.add_argument("command", choices=["serve"])
    p.add_argument("model")
    p.add_argument("--served-model-name", required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--enable-lora", action="store_true")
    p.add_argument("--max-lora-rank", type=int, default=16)
    p.add_argument("--max-model-len", type=int)
    args, _ = p.parse_known_args(argv)  # --max-loras, --gpu-memory-utilization, ...: vLLM's business
    app = create_standin(
        Path(args.model), args.served_model_name, api_key=os.environ.get("VLLM_API_KEY"),
        max_model_len=args.max_model_len, max_lora_rank=args.max_lora_rank,
        runtime_lora=args.enable_lora and os.environ.get("VLLM_ALLOW_RUNTIME_LORA_UPDATING", "").lower() == "true",
    )  # fmt: skip
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main(sys.argv[1:])
