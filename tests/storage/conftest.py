"""A real IPFS node for the storage tests: js-ipfs from npm, offline, on free loopback ports,
started once per session and stopped at the end."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from node.storage.jsipfs import JSIPFS, JsIpfsNode


@pytest.fixture(scope="session")
def ipfs_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if not JSIPFS.exists():
        pytest.skip("js-ipfs is not installed (run `npm ci`)")
    with JsIpfsNode(tmp_path_factory.mktemp("jsipfs")) as node:
        yield node.api_url
