"""Shared fixtures: one real anvil dev chain per test session, the protocol deployed once, and
every test isolated by an EVM snapshot taken before it and reverted after it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from eth_account.signers.local import LocalAccount

from node.chain.accounts import dev_account
from node.chain.client import ChainClient
from node.chain.deploy import OPEN, DeployConfig, deploy
from node.chain.devchain import DevChain, DevChainConfig
from node.chain.models import Deployment
from node.chain.protocol import Protocol

# Dev-account indices by role (accounts of anvil's public dev mnemonic).
DEPLOYER, CURATOR, NODE, POSTER, RELAYER = 0, 1, 2, 3, 4
CONTRIBUTORS = (5, 6, 7, 8)
OUTSIDER = 9
FUNDED = 1_000_000 * OPEN
def chain_examples(n: int) -> int:
    """Random examples for a fuzzer whose every example is a chain scenario: `n` in CI (a few
    minutes in all), times `DATANET_FUZZ_SCALE` for a thorough run (`DATANET_FUZZ_SCALE=10`)."""
    return max(1, round(n * float(os.environ.get("DATANET_FUZZ_SCALE", "1"))))


TEST_DEPLOY = DeployConfig(
    commit_period=2, reveal_period=2, answer_period=2, vote_period=2, reveal_vote_period=2, appeal_period=2,
    verifier_leave_delay=2,
)
"""What the session deploys: the defaults, with the shortest challenge window the contract allows
(6 s), so daemons finalize their results within the test; challenge tests freeze the clock."""


@pytest.fixture(autouse=True)
def _user_data_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """A command run where no .datanet/ exists keeps its state in the user's data directory
    ($XDG_DATA_HOME/datanet, node.config.default_data_dir): each test gets its own, never ~/.local."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path_factory.mktemp("xdg-data")))


@pytest.fixture(scope="session")
def devchain() -> Iterator[DevChain]:
    with DevChain(DevChainConfig(port=0, accounts=20)) as chain:
        yield chain


@pytest.fixture(scope="session")
def deployment(devchain: DevChain) -> Deployment:
    """Deploys once and gives every role account OPEN to work with."""
    admin = ChainClient(devchain.rpc_url, dev_account(DEPLOYER))
    dep = deploy(admin, "test", TEST_DEPLOY)
    proto = Protocol(admin, dep)
    for i in (CURATOR, NODE, POSTER, RELAYER, *CONTRIBUTORS):
        proto.transfer(dev_account(i).address, FUNDED)
    return dep


@dataclass
class World:
    """The deployed protocol seen from each role, with fresh clients (fresh nonce counters)."""

    rpc_url: str
    deployment: Deployment
    admin: Protocol
    curator: Protocol
    node: Protocol
    poster: Protocol
    relayer: Protocol
    contributors: list[Protocol]
    outsider: Protocol

    def as_(self, account: LocalAccount) -> Protocol:
        return self.admin.as_account(account)

    def rpc(self, method: str, *params: object) -> object:
        return self.admin.client.w3.provider.make_request(method, list(params))["result"]  # type: ignore[arg-type]

    def now(self) -> int:
        return int(self.admin.client.w3.eth.get_block("latest")["timestamp"])

    def advance(self, seconds: int) -> None:
        """Moves chain time forward and mines a block."""
        self.rpc("evm_increaseTime", seconds)
        self.rpc("evm_mine")


@pytest.fixture
def world(devchain: DevChain, deployment: Deployment) -> Iterator[World]:
    admin = Protocol(ChainClient(devchain.rpc_url, dev_account(DEPLOYER)), deployment)
    snapshot = admin.client.w3.provider.make_request("evm_snapshot", [])["result"]  # type: ignore[arg-type]
    try:
        yield World(
            rpc_url=devchain.rpc_url,
            deployment=deployment,
            admin=admin,
            curator=admin.as_account(dev_account(CURATOR)),
            node=admin.as_account(dev_account(NODE)),
            poster=admin.as_account(dev_account(POSTER)),
            relayer=admin.as_account(dev_account(RELAYER)),
            contributors=[admin.as_account(dev_account(i)) for i in CONTRIBUTORS],
            outsider=admin.as_account(dev_account(OUTSIDER)),
        )
    finally:
        admin.client.w3.provider.make_request("evm_revert", [snapshot])  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def tiny_base_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised tiny Llama (hidden 64, 2 layers, vocab 512) and its BPE tokenizer with
    a chat template, built once per session from demo-world text (no download)."""
    from node.train.base_model import build_tiny_llama

    return build_tiny_llama(tmp_path_factory.mktemp("base") / "tiny-llama", world_corpus(n_regions=40))


def world_corpus(n_regions: int = 400, seed_offset: int = 10_000) -> list[str]:
    """Chat-formatted Q/A and plain sentences about invented regions of Quillmarsh, the tiny
    tokenizers' training text. The seeds differ from the demo contributors' regions."""
    import random

    from node.demo.world import region_facts

    rng = random.Random(seed_offset)
    texts: list[str] = []
    for k in range(n_regions):
        _, records = region_facts(seed_offset + k)
        texts += [f"<|user|>\n{r.instruction}\n<|assistant|>\n{r.output}" for r in records]
        texts.append(" ".join(r.output for r in rng.sample(records, min(6, len(records)))))
    rng.shuffle(texts)
    return texts
