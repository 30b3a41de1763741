"""Every `--json` names on-chain enums (statuses, methods, phases) as the tables do, by their
lower-case name, never by number (`"status": "open"`, not `"status": 1`)."""

from __future__ import annotations

import json

from pydantic import BaseModel

from node.chain.models import HexBytes, JobStatus, Method
from node.cli.common import jsonable


class _Shown(BaseModel):
    status: JobStatus
    methods: list[Method]
    hash: HexBytes


def test_enums_by_name_everywhere() -> None:
    shown = _Shown(status=JobStatus.SUBMITTED, methods=[Method.LORA, Method.QLORA], hash=b"\x01\x02")
    want = {"status": "submitted", "methods": ["lora", "qlora"], "hash": "0x0102"}
    assert jsonable(shown) == want
    assert jsonable([{"job": shown, "n": 3}, JobStatus.OPEN]) == [{"job": want, "n": 3}, "open"]
    assert json.loads(json.dumps(jsonable({"status": JobStatus.CLAIMED}))) == {"status": "claimed"}
