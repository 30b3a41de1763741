"""Gas of every user-facing protocol call, and of posting and claiming rewards at scale.

Run it from the repository root (it starts and stops its own anvil; about 30 s):

    .venv/bin/python benchmarks/gas.py                    # N = 10, 1,000, 100,000; writes docs
    .venv/bin/python benchmarks/gas.py --sizes 10 --no-write

Every number is a transaction's `gasUsed` from its receipt: what the sender pays for, the
21,000 base and the calldata included. Results go to docs/benchmarks.md between
`<!-- gas:begin -->` and `<!-- gas:end -->`; the rest of that file is left as it is.

Why it measures what it does:
- Each call twice through the same flow: on a fresh deployment, first writes of counters and
  balances cost ~20k gas more than they do once the network is in use.
- A result carries its attribution as one 32-byte root, so posting must cost the same for 10
  or 100,000 contributors. Every N is posted from the same EVM snapshot; the script exits 1 if
  submitResult's gas varies by more than `post_spread_limit`.
- A claim is compared with Uniswap's MerkleDistributor (contracts/test/UniswapStyleDistributor.sol,
  tree built by `SortedPairTree`) in the same run, from the same snapshot, for the same indices,
  accounts and amounts, so the ratio isolates the contracts.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, TypeVar

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from eth_abi import encode
from eth_account.signers.local import LocalAccount
from pydantic import BaseModel, Field
from web3 import Web3
from web3.contract import Contract

if __package__ in (None, ""):  # run as a script: make the `benchmarks` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.baseline_tree import SortedPairTree, packed_leaf, same_word_neighbour, synthetic_accounts
from benchmarks.gas_report import (
    DOC,
    CallGas,
    ClaimGas,
    GasBenchmarkError,
    GasReport,
    ScalePoint,
    check_posting_constant,
    render_markdown,
    tool_versions,
    write_section,
)
from node.attribution.disputes import commitment, new_salt
from node.chain import inference
from node.chain.accounts import dev_account
from node.chain.artifacts import compile_contracts
from node.chain.client import ChainClient
from node.chain.deploy import OPEN, DeployConfig, deploy
from node.chain.devchain import DEV_CHAIN_ID, DevChain, DevChainConfig
from node.chain.models import ChallengeKind, ContributionInput, DatanetParams, Deployment, JobParams, ResultParams, Vote
from node.chain.protocol import Protocol
from node.config import REPO_ROOT
from node.data.encryption import derive_encryption_key, public_bytes
from node.rewards.epochs import epoch_tree
from node.rewards.merkle import StandardMerkleTree, process_proof
from node.rewards.shares import Share
from node.storage.unixfs import RAW, cid_bytes, cid_str

T = TypeVar("T")

DAY = 86_400
REWARD_TYPES = ["uint256", "uint256", "address", "uint256"]  # (jobId, index, account, amount)
POOL = 10_000 * OPEN
CONTRIBUTORS_BPS = 8_000  # what is left of a pool after the default 10% node + 10% Datanet fees
STAKE = 10 * OPEN
TREASURY = Web3.to_checksum_address("0x7e5a" + "00" * 17 + "01")  # key-less: only receives OPEN
RECIPIENT = Web3.to_checksum_address("0x7e5a" + "00" * 17 + "02")  # key-less: receives `transfer`
CID = "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"  # 59 chars, like a real CIDv1
BASELINE_ARTIFACT = (
    REPO_ROOT / "artifacts/contracts/test/UniswapStyleDistributor.sol/UniswapStyleDistributor.json"
)

# Dev accounts by role (anvil's public dev mnemonic); each role sends its own transactions.
ROLES = {
    "admin": 0, "owner": 1, "curator": 2, "contributor": 3, "permit_contributor": 4,
    "signer": 5, "relayer": 6, "node": 7, "node2": 8, "poster": 9, "claimer": 10, "baseline": 19,
    "verifier": 11, "verifier2": 12, "verifier3": 13,
}  # fmt: skip

# (call, contract, note), in the order of the table.
CALLS: list[tuple[str, str, str]] = [
    ("createDatanet", "DatanetRegistry", "with one curator"),
    ("setCurator", "DatanetRegistry", ""),
    ("setTrainer", "DatanetRegistry", "owner lets an account post jobs on a restricted Datanet"),
    ("setMetadata", "DatanetRegistry", "owner replaces the metadata CID"),
    ("transfer", "OpenToken", "fresh: to an account holding no OPEN yet"),
    ("approve (OPEN allowance)", "OpenToken", "what `contribute`/`stake`/`postJob` need first"),
    ("permit", "OpenToken", "EIP-2612 permit on its own, sent by the spender; fresh: the signer's first"),
    ("commitContribution", "DatanetRegistry", "commits (datanet, content, contributor) before the reveal"),
    ("contribute", "DatanetRegistry", "reveals a committed contribution, bonds the stake from the allowance"),
    ("contributeWithPermit", "DatanetRegistry", "EIP-2612 permit, no approve"),
    ("contributeBySig (relayed)", "DatanetRegistry", "relayer pays; EIP-712 signature + permit"),
    ("approve", "DatanetRegistry", "curator approves a contribution"),
    ("reject (slash)", "DatanetRegistry", "50% to the treasury, the rest back"),
    ("withdraw (contribution)", "DatanetRegistry", "after the lock period"),
    ("setEncryptionKey", "KeyRegistry", "an account's first X25519 key (each pass another node)"),
    ("setDatanetKey", "KeyRegistry", "owner publishes a private Datanet's key (version 1) and key-grants CID"),
    ("grantAccess", "KeyRegistry", "curator grants a node one job's file keys (a job-grant CID)"),
    ("stake", "NodeStaking", ""),
    ("stakeWithPermit", "NodeStaking", ""),
    ("requestUnbond", "NodeStaking", ""),
    ("withdraw (stake)", "NodeStaking", "after the unbonding period"),
    ("postJob", "ModelRegistry", "escrows the pool and the 1 % verifier fee"),
    ("postJobWithPermit", "ModelRegistry", ""),
    ("claimJob", "ModelRegistry", "reserves the job's bond out of the node's free stake"),
    ("cancelJob", "ModelRegistry", "refunds the pool and the verifier fee"),
    ("expireJob", "ModelRegistry", "refund + half the job's bond to the poster"),
    ("submitResult", "ModelRegistry", "registers the pending model; bond and pool are held for the challenge window"),
    ("finalize", "ModelRegistry",
     "after the window: releases the bond, opens the reward round, pays fees and the verifier fee"),
    ("claim", "RewardDistributor", "3-leaf tree"),
    ("sweep", "RewardDistributor", "after the claim window"),
    ("join", "VerifierCourt", "a verifier stakes (fresh: a new member of the set)"),
    ("reveal (Recompute)", "ResultChallenges", "refers the challenge: moves its bond to the court, opens a case"),
    ("draw", "VerifierCourt", "a committee of 3 drawn by stake from 3 verifiers"),
    ("commitVote", "VerifierCourt", "a member's sealed vote"),
    ("revealVote", "VerifierCourt", ""),
    ("tally", "VerifierCourt", "3 votes, a Fault majority paid half the bond"),
    ("close (upheld)", "VerifierCourt", "after the appeal period: returns the bond, voids the result, slashes"),
    ("claimFees", "VerifierCourt", "a verifier's committee fees and its share of finalized jobs' fees"),
    ("deposit", "InferenceEscrow", "a payer prepays a node's inference (after an approve)"),
    ("requestWithdraw", "InferenceEscrow", "starts the withdrawal delay"),
    ("settle", "InferenceEscrow", "a node charges 1 payer and opens and funds its epoch round (3-leaf tree)"),
    ("claimEpoch", "RewardDistributor", "3-leaf tree"),
    ("openEpochRound", "RewardDistributor", "a node sponsors an epoch from its own wallet (after an approve)"),
    ("refundUnclaimed", "InferenceEscrow", "after the claim window: sweeps the round back, credits the payer"),
    ("sweepEpoch", "RewardDistributor", "after the claim window: a sponsored round's rest to its funder"),
    ("withdraw (escrow)", "InferenceEscrow", "after the delay"),
]


class BenchConfig(BaseModel):
    """What to measure."""

    sizes: list[Annotated[int, Field(ge=1)]] = Field(
        [10, 1_000, 100_000], min_length=1, description="Contributor counts N of the scale runs."
    )
    post_spread_limit: int = Field(300, description="Max gas by which submitResult may vary across N.")
    calls: bool = Field(True, description="Measure every user-facing call (two passes of the flow).")


# ------------------------------------------------------------------------ benchmark


class GasBenchmark:
    """Life cycle: `setup()` (anvil, deploy, fund) → `measure_calls()` → `measure_scale()` →
    `cleanup()`. `run()` does all four."""

    def __init__(self, config: BenchConfig | None = None):
        self.config = config or BenchConfig()
        self._chain: DevChain | None = None
        self._protos: dict[str, Protocol] = {}
        self._deployment: Deployment | None = None
        self._datanet = 0
        self._contribution_to_withdraw = 0
        self._job = 0
        self._config = DeployConfig.for_chain(DEV_CHAIN_ID)

    # -- life cycle

    def setup(self) -> None:
        if not BASELINE_ARTIFACT.exists():
            compile_contracts()
        if not BASELINE_ARTIFACT.exists():
            raise GasBenchmarkError(
                f"No baseline artifact at {BASELINE_ARTIFACT}; run `npx hardhat compile`."
            )
        self._chain = DevChain(DevChainConfig(port=0, accounts=20)).start()
        admin = ChainClient(self._chain.rpc_url, dev_account(ROLES["admin"]))
        self._config = DeployConfig.for_chain(DEV_CHAIN_ID)  # a challenge window of seconds
        self._deployment = deploy(admin, "gas-benchmark", self._config)
        for role in ("owner", "contributor", "permit_contributor", "signer", "node", "node2", "poster", "relayer",
                     "verifier", "verifier2", "verifier3"):  # fmt: skip
            self.p("admin").transfer(self.p(role).address, 1_000_000 * OPEN)

    def cleanup(self) -> None:
        if self._chain is not None:
            self._chain.stop()
            self._chain = None

    def run(self) -> GasReport:
        try:
            self.setup()
            calls = self.measure_calls() if self.config.calls else []
            scale = self.measure_scale()
        finally:
            self.cleanup()
        anvil, solc, commit = tool_versions()
        return GasReport(
            date=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            anvil=anvil,
            solc=solc,
            commit=commit,
            calls=calls,
            scale=scale,
        )

    # -- chain helpers

    def p(self, role: str) -> Protocol:
        """The protocol as seen by `role` (clients are dropped on revert: their nonces go stale)."""
        if role not in self._protos:
            if self._chain is None or self._deployment is None:
                raise GasBenchmarkError("Call setup() first: no chain or deployment yet.")
            self._protos[role] = Protocol(
                ChainClient(self._chain.rpc_url, dev_account(ROLES[role])), self._deployment
            )
        return self._protos[role]

    def _rpc(self, method: str, *params: Any) -> Any:
        return self.p("admin").client.w3.provider.make_request(method, list(params))["result"]  # type: ignore[arg-type]

    def _snapshot(self) -> str:
        return str(self._rpc("evm_snapshot"))

    def _revert(self, snapshot: str) -> None:
        if not self._rpc("evm_revert", snapshot):
            raise GasBenchmarkError(f"anvil refused to revert to snapshot {snapshot}.")
        self._protos.clear()

    def _restore(self, snapshot: str) -> str:
        """Back to `snapshot`; returns a new id for the same state (anvil drops a used snapshot)."""
        self._revert(snapshot)
        return self._snapshot()

    def _advance(self, seconds: int) -> None:
        self._rpc("evm_increaseTime", seconds)
        self._rpc("evm_mine")

    def _now(self) -> int:
        return int(self.p("admin").client.w3.eth.get_block("latest")["timestamp"])

    def _gas(self, gas: dict[str, int], name: str, role: str, action: Callable[[], T]) -> T:
        """Runs `role`'s `action` (one transaction) and records its receipt's gasUsed as `name`."""
        client = self.p(role).client
        before = client.last_receipt
        result = action()
        receipt = client.last_receipt
        if receipt is None or receipt is before:
            raise GasBenchmarkError(f"{name}: no transaction was sent by {role}.")
        gas[name] = int(receipt["gasUsed"])
        return result

    # -- every call

    def measure_calls(self) -> list[CallGas]:
        first, repeat = self._flow(0), self._flow(1)
        return [CallGas(call=c, contract=k, first=first[c], repeat=repeat[c], note=n) for c, k, n in CALLS]

    def _flow(self, k: int) -> dict[str, int]:
        """One pass through every user-facing call; `k` keeps content hashes distinct."""
        gas: dict[str, int] = {}
        self._contribution_calls(gas, k)
        self._staking_and_job_calls(gas)
        self._court_calls(gas)
        self._private_datanet_calls(gas, k)
        self._token_calls(gas)
        self._inference_calls(gas, k)
        return gas

    def _contribution_calls(self, gas: dict[str, int], k: int) -> None:
        p, deadline = self.p, self._now() + 3_600
        params = DatanetParams(name=f"bench-{k}", treasury=TREASURY, curators=[p("curator").address])
        self._datanet = did = self._gas(
            gas, "createDatanet", "owner", lambda: p("owner").create_datanet(params)
        )
        self._gas(gas, "setCurator", "owner", lambda: p("owner").set_curator(did, p("relayer").address))

        def item(i: int) -> ContributionInput:
            digest = hashlib.sha256(f"contribution {k}-{i}".encode()).digest()
            return ContributionInput(
                datanetId=did, cid=CID, contentHash=digest, byteSize=48_000, recordCount=120, stake=STAKE
            )

        c, c2, signer = p("contributor"), p("permit_contributor"), p("signer")
        self._gas(
            gas, "approve (OPEN allowance)", "contributor", lambda: c.approve(c.datanets.address, STAKE)
        )
        salt = self._gas(gas, "commitContribution", "contributor", lambda: c.commit_contribution(item(0)))
        first = self._gas(gas, "contribute", "contributor", lambda: c.contribute(item(0), salt=salt))
        permit = c2.permit(c2.datanets.address, STAKE, deadline)
        second = self._gas(
            gas, "contributeWithPermit", "permit_contributor", lambda: c2.contribute(item(1), permit)
        )
        signature = signer.sign_contribution(item(2), deadline)
        signer_permit = signer.permit(signer.datanets.address, STAKE, deadline)
        self._gas(
            gas,
            "contributeBySig (relayed)",
            "relayer",
            lambda: p("relayer").relay_contribution(
                item(2), signer.address, deadline, signature, signer_permit
            ),
        )
        self._gas(gas, "approve", "curator", lambda: p("curator").approve_contribution(first))
        self._gas(gas, "reject (slash)", "curator", lambda: p("curator").reject_contribution(second, "spam"))
        self._contribution_to_withdraw = first

    def _staking_and_job_calls(self, gas: dict[str, int]) -> None:
        p, now = self.p, self._now()
        node, node2, poster = p("node"), p("node2"), p("poster")
        min_stake = node.min_node_stake()
        bonds = 2 * max(min_stake, POOL * CONTRIBUTORS_BPS // 10_000)  # node claims jobs A and C
        node.approve(node.staking.address, bonds)
        self._gas(gas, "stake", "node", lambda: node.stake(bonds))
        permit = node2.permit(node2.staking.address, min_stake, now + 3_600)
        self._gas(gas, "stakeWithPermit", "node2", lambda: node2.stake(min_stake, permit))
        self._gas(gas, "requestUnbond", "node2", lambda: node2.request_unbond(min_stake))

        poster.approve(poster.models.address, 2 * poster.job_cost(POOL))  # jobs A and C; B comes with a permit
        self._job = job_a = self._gas(
            gas, "postJob", "poster", lambda: poster.post_job(job_params(now, self._datanet, 2 * DAY))
        )
        job_c = poster.post_job(job_params(now, self._datanet, DAY))
        permit = poster.permit(poster.models.address, poster.job_cost(POOL), now + 3_600)
        params_b = job_params(now, self._datanet, 2 * DAY)
        job_b = self._gas(gas, "postJobWithPermit", "poster", lambda: poster.post_job(params_b, permit))
        self._gas(gas, "claimJob", "node", lambda: node.claim_job(job_a))
        self._gas(gas, "cancelJob", "poster", lambda: poster.cancel_job(job_b))
        node.claim_job(job_c)

        share = POOL * CONTRIBUTORS_BPS // 10_000
        accounts = [p(r).address for r in ("contributor", "permit_contributor", "signer")]
        amounts = [share // 2, share // 4, share // 4]
        tree = StandardMerkleTree.of(
            [[job_a, i, a, amounts[i]] for i, a in enumerate(accounts)], REWARD_TYPES
        )
        self._gas(gas, "submitResult", "node", lambda: node.submit_result(job_a, result_params(tree.root)))
        self._advance(self._config.challenge_window)
        self._gas(gas, "finalize", "relayer", lambda: p("relayer").finalize(job_a))
        c = p("contributor")
        self._gas(
            gas,
            "claim",
            "contributor",
            lambda: c.claim_reward(job_a, 0, c.address, amounts[0], tree.proof(0)),
        )

        self._advance(8 * DAY)  # past the contribution lock, the unbonding period and job C's deadline
        self._gas(
            gas,
            "withdraw (contribution)",
            "contributor",
            lambda: c.withdraw_contribution(self._contribution_to_withdraw),
        )
        self._gas(gas, "withdraw (stake)", "node2", lambda: node2.withdraw_stake())
        self._gas(gas, "expireJob", "relayer", lambda: p("relayer").expire_job(job_c))
        self._advance(self._config.claim_window + DAY)
        self._gas(gas, "sweep", "poster", lambda: poster.sweep(job_a))

    def _court_calls(self, gas: dict[str, int]) -> None:
        """Three verifiers join; a job's result is challenged as not reproducing; the committee
        is drawn, votes Fault sealed, reveals; the case is tallied and closed: the result voided."""
        p = self.p
        node, poster, challenger = p("node"), p("poster"), p("relayer")
        members = {p(r).address: r for r in ("verifier", "verifier2", "verifier3")}
        stake = p("admin").min_verifier_stake()
        self._gas(gas, "join", "verifier", lambda: p("verifier").join_court(stake))
        for role in ("verifier2", "verifier3"):
            p(role).join_court(stake)
        poster.approve(poster.models.address, poster.job_cost(POOL))
        job = poster.post_job(job_params(self._now(), self._datanet, 2 * DAY))
        bond = node.bond_for(job)
        node.approve(node.staking.address, bond)
        node.stake(bond)
        node.claim_job(job)
        node.submit_result(job, result_params(hashlib.sha256(b"court").digest()))
        model_id = node.job(job).modelId
        evidence = encode(["uint256", "string"], [0, "example 0's score does not reproduce"])
        salt = new_salt()
        challenger.approve(challenger.challenges.address, challenger.challenge_bond())
        case = challenger.commit_challenge(model_id, commitment(ChallengeKind.RECOMPUTE, evidence, salt))
        self._gas(gas, "reveal (Recompute)", "relayer",
                  lambda: challenger.reveal_challenge(case, ChallengeKind.RECOMPUTE, evidence, salt))  # fmt: skip
        self._rpc("evm_mine")  # the seed block
        self._gas(gas, "draw", "relayer", lambda: challenger.draw_committee(case))
        drawn = [p(members[m]) for m in p("admin").court_round(case, 0).members]
        first, role = drawn[0], members[drawn[0].address]
        salts = [new_salt() for _ in drawn]
        sealed = [v.vote_commitment(case, 0, Vote.FAULT, s) for v, s in zip(drawn, salts, strict=True)]
        self._gas(gas, "commitVote", role, lambda: first.commit_vote(case, sealed[0]))
        for v, seal in zip(drawn[1:], sealed[1:], strict=True):
            v.commit_vote(case, seal)
        self._advance(self._config.vote_period + 1)
        self._gas(gas, "revealVote", role, lambda: first.reveal_vote(case, Vote.FAULT, salts[0]))
        for v, s in zip(drawn[1:], salts[1:], strict=True):
            v.reveal_vote(case, Vote.FAULT, s)
        self._advance(self._config.reveal_vote_period + 1)
        self._gas(gas, "tally", "relayer", lambda: challenger.tally(case))
        self._advance(self._config.appeal_period + 1)
        self._gas(gas, "close (upheld)", "relayer", lambda: challenger.close_case(case))
        self._gas(gas, "claimFees", role, lambda: first.claim_court_fees())

    def _private_datanet_calls(self, gas: dict[str, int], k: int) -> None:
        """A restricted private Datanet's settings and keys, sent as node/data/grants.py sends them.
        Its creation is not measured (that is `createDatanet` above)."""
        p, owner, curator = self.p, self.p("owner"), self.p("curator")
        params = DatanetParams(
            name=f"private-{k}",
            metadataCID=doc_cid(f"metadata {k}"),
            isPrivate=True,
            restricted=True,
            treasury=TREASURY,
            curators=[curator.address],
        )
        did = owner.create_datanet(params)
        self._gas(gas, "setTrainer", "owner", lambda: owner.set_trainer(did, p("poster").address))
        self._gas(gas, "setMetadata", "owner", lambda: owner.set_metadata(did, doc_cid(f"metadata {k} v2")))
        # An account publishes its key once (`ensure_encryption_key`), so each pass a new one does.
        role = ("node", "node2")[k % 2]
        key = public_bytes(derive_encryption_key(dev_account(ROLES[role])))
        self._gas(gas, "setEncryptionKey", role, lambda: p(role).set_encryption_key(key))
        # grants.py generates the key pair; a seeded one keeps the calldata (and the gas) reproducible.
        seed = hashlib.sha256(f"datanet key {k}".encode()).digest()
        public = public_bytes(X25519PrivateKey.from_private_bytes(seed))
        self._gas(
            gas,
            "setDatanetKey",
            "owner",
            lambda: owner.set_datanet_key(did, public, doc_cid(f"key grants {k}")),
        )
        # The contract does not check the job id (nodes check the grant document against the
        # ModelRegistry), so the job the node claimed above stands in.
        node, grant = p("node").address, doc_cid(f"job grant {k}")
        self._gas(gas, "grantAccess", "curator", lambda: curator.grant_access(did, node, self._job, grant))

    def _token_calls(self, gas: dict[str, int]) -> None:
        """A plain transfer, and a permit sent on its own (by the spender, who then spends it)."""
        c, relayer = self.p("contributor"), self.p("relayer")
        self._gas(gas, "transfer", "contributor", lambda: c.transfer(RECIPIENT, OPEN))
        permit = c.permit(relayer.address, STAKE, self._now() + 3_600)
        fn = relayer.token.functions.permit(
            c.address, relayer.address, STAKE, permit.deadline, permit.v, permit.r, permit.s
        )
        self._gas(gas, "permit", "relayer", lambda: relayer.client.transact(fn))
        # Spend the allowance, as a permit's spender does, so the next pass's permit writes it anew.
        relayer.client.transact(relayer.token.functions.transferFrom(c.address, relayer.address, STAKE))

    def _inference_calls(self, gas: dict[str, int], k: int) -> None:
        """Paid inference: a payer's deposit, a node's settlement of an epoch (its round funded by
        the escrow) and a sponsored one, a claim, and after the windows the unclaimed rests back."""
        p = self.p
        node, payer, claimer = p("node"), p("poster"), p("claimer")
        epoch = 100 + k
        self._gas(gas, "deposit", "poster", lambda: inference.deposit(payer, node.address, 10 * OPEN))
        self._gas(gas, "requestWithdraw", "poster", lambda: inference.request_withdraw(payer, node.address, OPEN))
        shares = [Share(account=p(r).address, amount=OPEN) for r in ("contributor", "permit_contributor", "signer")]
        paid = epoch_tree(node.escrow.address, inference.escrow_round_id(node.address, epoch), shares)
        charge = [inference.Charge(payer=payer.address, amount=3 * OPEN)]
        self._gas(gas, "settle", "node", lambda: inference.settle(node, epoch, paid.root, charge, CID))
        funder, key, index, account, amount = paid.values()[0]
        proof = paid.proof(0)
        self._gas(gas, "claimEpoch", "claimer",
                  lambda: inference.claim_epoch(claimer, funder, key, index, account, amount, proof))  # fmt: skip
        sponsored = epoch_tree(node.address, epoch, shares)
        self._gas(gas, "openEpochRound", "node",
                  lambda: inference.open_epoch_round(node, epoch, sponsored.root, 3 * OPEN, CID))  # fmt: skip
        self._advance(max(self._config.claim_window, inference.withdraw_delay(node)) + DAY)
        self._gas(gas, "refundUnclaimed", "claimer", lambda: inference.refund_unclaimed(claimer, node.address, epoch))
        self._gas(gas, "sweepEpoch", "claimer", lambda: inference.sweep_epoch(claimer, node.address, epoch))
        self._gas(gas, "withdraw (escrow)", "poster", lambda: inference.withdraw(payer, node.address))

    # -- scale

    def measure_scale(self) -> list[ScalePoint]:
        """Posting and claiming for each N, all from one snapshot (a claimed job, ready to submit)."""
        p, now = self.p, self._now()
        if not self._datanet:
            self._datanet = p("owner").create_datanet(DatanetParams(name="bench", treasury=TREASURY))
        node, poster = p("node"), p("poster")
        poster.approve(poster.models.address, poster.job_cost(POOL))
        job = poster.post_job(job_params(now, self._datanet, 30 * DAY))
        bond = node.bond_for(job)
        node.approve(node.staking.address, bond)
        node.stake(bond)
        node.claim_job(job)
        points = []
        for n in self.config.sizes:
            base = self._snapshot()
            points.append(self._scale_point(job, n))
            self._revert(base)
        return points

    def _scale_point(self, job: int, n: int) -> ScalePoint:
        share = POOL * CONTRIBUTORS_BPS // 10_000
        accounts = synthetic_accounts(n)
        amounts = [share // n - i % 7 for i in range(n)]  # a little varied, summing to <= share
        t0 = time.perf_counter()
        tree = StandardMerkleTree.of([[job, i, accounts[i], amounts[i]] for i in range(n)], REWARD_TYPES)
        t1 = time.perf_counter()
        baseline_tree = SortedPairTree([packed_leaf(i, accounts[i], amounts[i]) for i in range(n)])
        t2 = time.perf_counter()

        post: dict[str, int] = {}
        self._gas(
            post, "submitResult", "node", lambda: self.p("node").submit_result(job, result_params(tree.root))
        )
        self._advance(self._config.challenge_window)
        self.p("relayer").finalize(job)  # opens the round the claims below are measured against
        baseline = self._deploy_baseline(baseline_tree.root, share)

        def ours(i: int) -> object:
            return self.p("claimer").claim_reward(job, i, accounts[i], amounts[i], tree.proof(i))

        def theirs(i: int) -> object:
            proof = baseline_tree.proof(i)
            if process_proof(packed_leaf(i, accounts[i], amounts[i]), proof) != baseline_tree.root:
                raise GasBenchmarkError(f"Baseline proof of leaf {i} does not verify (N={n}).")
            claim = baseline.functions.claim(i, Web3.to_checksum_address(accounts[i]), amounts[i], proof)
            return self.p("claimer").client.transact(claim)

        state = self._snapshot()  # every claim below starts from here
        claims = []
        for i in sorted({0, n // 2, n - 1}):
            j = same_word_neighbour(i, n)
            gas: dict[str, int | None] = {}
            for key, claim in (("first", ours), ("baseline_first", theirs)):
                gas[key] = self._claim_gas(claim, i, None)
                state = self._restore(state)
            for key, claim in (("typical", ours), ("baseline_typical", theirs)):
                gas[key] = None if j is None else self._claim_gas(claim, i, j)
                state = self._restore(state)
            claims.append(
                ClaimGas(
                    index=i,
                    proof_len=len(tree.proof(i)),
                    baseline_proof_len=len(baseline_tree.proof(i)),
                    **gas,
                )
            )
        return ScalePoint(
            n=n,
            tree_build_s=t1 - t0,
            baseline_tree_build_s=t2 - t1,
            post_gas=post["submitResult"],
            claims=claims,
        )

    def _claim_gas(self, claim: Callable[[int], object], i: int, after: int | None) -> int:
        """Gas of claiming leaf `i`, once leaf `after` (of the same bitmap word) is claimed."""
        if after is not None:
            claim(after)
        gas: dict[str, int] = {}
        self._gas(gas, "claim", "claimer", lambda: claim(i))
        return gas["claim"]

    def _deploy_baseline(self, root: bytes, funds: int) -> Contract:
        """Deploys the baseline distributor from its own account (so no client's nonce moves)."""
        art = json.loads(BASELINE_ARTIFACT.read_text())
        w3 = self.p("admin").client.w3
        account: LocalAccount = dev_account(ROLES["baseline"])
        ctor = w3.eth.contract(abi=art["abi"], bytecode=art["bytecode"]).constructor(
            self.p("admin").token.address, root
        )
        tx = ctor.build_transaction(
            {"from": account.address, "nonce": w3.eth.get_transaction_count(account.address)}
        )
        receipt = w3.eth.wait_for_transaction_receipt(
            w3.eth.send_raw_transaction(account.sign_transaction(tx).raw_transaction), poll_latency=0.05
        )
        if receipt["status"] != 1 or receipt["contractAddress"] is None:
            raise GasBenchmarkError("Deploying UniswapStyleDistributor failed.")
        self.p("admin").transfer(receipt["contractAddress"], funds)
        return w3.eth.contract(address=receipt["contractAddress"], abi=art["abi"])


def doc_cid(label: str) -> str:
    """The CID of a small document as the content store names it (CIDv1, raw leaf, 59 chars)."""
    return cid_str(cid_bytes(RAW, label.encode()))


def job_params(now: int, datanet: int, deadline_in: int) -> JobParams:
    return JobParams(
        baseModel="Qwen/Qwen2.5-0.5B-Instruct",
        baseModelHash=hashlib.sha256(b"base weights").digest(),
        datanetIds=[datanet],
        configCID=CID,
        configHash=hashlib.sha256(b"config").digest(),
        pool=POOL,
        deadline=now + deadline_in,
    )


def result_params(attribution_root: bytes) -> ResultParams:
    """A result whose only N-dependent field is the 32-byte attribution root."""
    return ResultParams(
        adapterCID=CID,
        adapterHash=hashlib.sha256(b"adapter").digest(),
        metricsCID=CID,
        dataRoot=hashlib.sha256(b"data root").digest(),
        attributionRoot=attribution_root,
        attributionCID=CID,
        scoresRoot=hashlib.sha256(b"scores root").digest(),
        totalWeight=10**12,
        exampleCount=10_000,
    )


def run_benchmark(config: BenchConfig | None = None) -> GasReport:
    """Runs everything on a fresh anvil; raises `GasBenchmarkError` if posting varies with N."""
    cfg = config or BenchConfig()
    report = GasBenchmark(cfg).run()
    check_posting_constant(report, cfg.post_spread_limit)
    return report


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--sizes", type=int, nargs="+", default=BenchConfig().sizes, help="contributor counts N")
    ap.add_argument("--no-write", action="store_true", help=f"print only; do not update {DOC}")
    ap.add_argument("--json", type=Path, help="also write the raw results as JSON here")
    args = ap.parse_args(argv)
    cfg = BenchConfig(sizes=args.sizes)
    report = GasBenchmark(cfg).run()
    markdown = render_markdown(report)
    print(markdown)
    if args.json:
        args.json.write_text(report.model_dump_json(indent=2) + "\n")
    try:
        check_posting_constant(report, cfg.post_spread_limit)
    except GasBenchmarkError as e:
        print(f"\nFAILED: {e}", file=sys.stderr)
        return 1  # the docs keep their last good numbers
    if not args.no_write:
        print(f"\nwrote {write_section(markdown)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
