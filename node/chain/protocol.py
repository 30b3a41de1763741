"""Typed bindings of the protocol contracts for one account.

Each write returns what a caller needs next (a new id parsed from the event, or the receipt);
each read returns a pydantic model. Reverts surface as `ContractRevertError`.
"""

from __future__ import annotations

import secrets
from typing import Any

from eth_abi import encode
from eth_account.signers.local import LocalAccount
from eth_typing import ChecksumAddress
from eth_utils import keccak
from web3 import Web3
from web3.contract import Contract
from web3.logs import DISCARD
from web3.types import TxReceipt

from node.chain import signing
from node.chain.client import ChainClient
from node.chain.models import (
    AccessGrant,
    Ballot,
    Challenge,
    ChallengeKind,
    Contribution,
    ContributionInput,
    CourtCase,
    CourtRound,
    Datanet,
    DatanetKey,
    DatanetParams,
    Deployment,
    EvalReveal,
    Job,
    JobParams,
    Model,
    NodeStake,
    Permit,
    ResultCommitment,
    ResultParams,
    Round,
    VerifierStake,
    Vote,
)
from node.errors import DeploymentError


def _args(model: Any) -> dict[str, Any]:
    """A pydantic model as the dict web3 encodes into a Solidity struct."""
    return model.model_dump() if hasattr(model, "model_dump") else dict(model)


def _as_dict(value: Any) -> dict[str, Any]:
    return value._asdict() if hasattr(value, "_asdict") else dict(value)


REQUIRED_CONTRACTS = ("OpenToken", "DatanetRegistry", "NodeStaking", "RewardDistributor", "ModelRegistry")
"""Contracts every deployment file has had since the first."""
OPTIONAL_CONTRACTS = {
    "ProtocolTimelock": "timelocked parameters",
    "ResultChallenges": "challenge windows",
    "VerifierCourt": "recomputation committees",
    "KeyRegistry": "private Datanets",
    "InferenceEscrow": "inference fee escrow and epoch rewards",
}
"""Contracts a deployment file may lack (written before they existed), with what they brought."""


class Protocol:
    """All protocol contracts, bound to one client (one signing account)."""

    def __init__(self, client: ChainClient, deployment: Deployment):
        chain_id = client.chain_id
        if chain_id != deployment.chain_id:
            raise DeploymentError(
                f"The deployment file is for chain id {deployment.chain_id} but {client.rpc_url} is "
                f"chain id {chain_id}. Redeploy (`datanet deploy`) or point at the right RPC URL."
            )
        genesis = client.genesis_hash
        if deployment.genesis_hash is not None and deployment.genesis_hash.lower() != genesis:
            raise DeploymentError(
                f"The deployment file for network '{deployment.network}' was written for another chain: its "
                f"genesis block is {deployment.genesis_hash}, but {client.rpc_url} (chain id {chain_id}) has "
                f"genesis {genesis}, so the chain was restarted or replaced since (a dev chain forgets its "
                "contracts when it stops). Redeploy with `datanet deploy`, or point DATANET_RPC_URL at the "
                "chain it was deployed to."
            )
        self.client = client
        self.deployment = deployment
        self.chain_id = chain_id
        self.genesis_hash = genesis
        """0x-hash of the chain's block 0 (checked against the deployment file's where it has one)."""
        c = deployment.contracts
        missing = [n for n in REQUIRED_CONTRACTS if n not in c]
        if missing:
            raise DeploymentError(
                f"The deployment file for network '{deployment.network}' lacks the {', '.join(missing)} "
                "contract(s) every deployment has, so it was edited or cut short. Redeploy with `datanet deploy` "
                "(or restore the file)."
            )
        self.token: Contract = client.contract("OpenToken", c["OpenToken"])
        self.datanets: Contract = client.contract("DatanetRegistry", c["DatanetRegistry"])
        self.staking: Contract = client.contract("NodeStaking", c["NodeStaking"])
        self.rewards: Contract = client.contract("RewardDistributor", c["RewardDistributor"])
        self.models: Contract = client.contract("ModelRegistry", c["ModelRegistry"])
        # Contracts newer than the first deployments: a file written before one existed still loads,
        # and using it says what to do (`_deployed`).
        self._optional: dict[str, Contract] = {n: client.contract(n, c[n]) for n in OPTIONAL_CONTRACTS if n in c}

    def as_account(self, account: LocalAccount) -> Protocol:
        return Protocol(self.client.with_account(account), self.deployment)

    @property
    def address(self) -> ChecksumAddress:
        return self.client.address

    @property
    def keys(self) -> Contract:
        """The KeyRegistry (private Datanets' keys and grants)."""
        return self._deployed("KeyRegistry")

    @property
    def escrow(self) -> Contract:
        """The InferenceEscrow (prepaid inference fees; bindings in node.chain.inference)."""
        return self._deployed("InferenceEscrow")

    def _deployed(self, name: str) -> Contract:
        contract = self._optional.get(name)
        if contract is None:
            raise DeploymentError(
                f"The deployment file for network '{self.deployment.network}' has no {name} contract (it predates "
                f"{OPTIONAL_CONTRACTS[name]}). Redeploy with `datanet deploy`."
            )
        return contract

    def _event_arg(self, receipt: TxReceipt, contract: Contract, event: str, arg: str) -> Any:
        logs = getattr(contract.events, event)().process_receipt(receipt, errors=DISCARD)
        return logs[0]["args"][arg]

    # ------------------------------------------------------------------ OPEN token

    def balance(self, account: str | None = None) -> int:
        who = Web3.to_checksum_address(account) if account else self.address
        return int(self.client.call(self.token.functions.balanceOf(who)))

    def transfer(self, to: str, amount: int) -> TxReceipt:
        return self.client.transact(self.token.functions.transfer(Web3.to_checksum_address(to), amount))

    def approve(self, spender: str, amount: int) -> TxReceipt:
        return self.client.transact(self.token.functions.approve(Web3.to_checksum_address(spender), amount))

    def permit(self, spender: ChecksumAddress, value: int, deadline: int) -> Permit:
        """Signs (offline) an EIP-2612 permit of this account's OPEN for `spender`."""
        assert self.client.account is not None
        nonce = int(self.client.call(self.token.functions.nonces(self.address)))
        return signing.sign_permit(
            self.client.account, self.token.address, self.chain_id, spender, value, nonce, deadline
        )

    # ---------------------------------------------------------------- Datanets

    def create_datanet(self, params: DatanetParams) -> int:
        receipt = self.client.transact(self.datanets.functions.createDatanet(_args(params)))
        return int(self._event_arg(receipt, self.datanets, "DatanetCreated", "datanetId"))

    def set_curator(self, datanet_id: int, account: str, allowed: bool = True) -> TxReceipt:
        fn = self.datanets.functions.setCurator(datanet_id, Web3.to_checksum_address(account), allowed)
        return self.client.transact(fn)

    def set_trainer(self, datanet_id: int, account: str, allowed: bool = True) -> TxReceipt:
        fn = self.datanets.functions.setTrainer(datanet_id, Web3.to_checksum_address(account), allowed)
        return self.client.transact(fn)

    def set_trusted_node(self, datanet_id: int, node: str, trusted: bool = True) -> TxReceipt:
        fn = self.datanets.functions.setTrustedNode(datanet_id, Web3.to_checksum_address(node), trusted)
        return self.client.transact(fn)

    def trusted_nodes(self, datanet_id: int) -> list[ChecksumAddress]:
        """The nodes `datanet_id` trusts now, from its TrustedNodeSet logs (the last word per node
        counts), each confirmed against the registry's current state."""
        event = self.datanets.events.TrustedNodeSet
        logs = self.client.rpc(
            lambda: event.get_logs(from_block=self.deployment.deploy_block, argument_filters={"datanetId": datanet_id}),
            "get TrustedNodeSet logs",
        )
        named = {Web3.to_checksum_address(log["args"]["node"]) for log in logs}
        fn = self.datanets.functions.isTrustedNode
        return sorted(n for n in named if self.client.call(fn(datanet_id, n)))

    def can_claim(self, datanet_id: int, node: str | None = None) -> bool:
        """Whether `node` (default: this account) may claim jobs that train on `datanet_id`."""
        who = Web3.to_checksum_address(node) if node else self.address
        return bool(self.client.call(self.datanets.functions.canClaim(datanet_id, who)))

    def set_metadata(self, datanet_id: int, metadata_cid: str) -> TxReceipt:
        return self.client.transact(self.datanets.functions.setMetadata(datanet_id, metadata_cid))

    def contribution_commitment(self, contribution: ContributionInput, contributor: str, salt: bytes) -> bytes:
        """`keccak256(abi.encode(datanetId, contentHash, contributor, salt))`, as the registry computes it."""
        return keccak(
            encode(
                ["uint256", "bytes32", "address", "bytes32"],
                [contribution.datanetId, bytes(contribution.contentHash), Web3.to_checksum_address(contributor), salt],
            )
        )

    def commit_contribution(self, contribution: ContributionInput, contributor: str | None = None) -> bytes:
        """Commits a contribution (of `contributor`, default this account) with a fresh secret salt;
        returns the salt, which its reveal needs. Anyone may commit for a contributor (a relayer)."""
        salt = secrets.token_bytes(32)
        commitment = self.contribution_commitment(contribution, contributor or self.address, salt)
        self.client.transact(self.datanets.functions.commitContribution(commitment))
        return salt

    def contribute(
        self, contribution: ContributionInput, permit: Permit | None = None, salt: bytes | None = None
    ) -> int:
        """Submits from this account: commits first (unless `salt` names a commitment already mined),
        then reveals in the next block; with `permit` there is no separate approve step."""
        salt = salt if salt is not None else self.commit_contribution(contribution)
        fns = self.datanets.functions
        fn = (
            fns.contributeWithPermit(_args(contribution), salt, _args(permit))
            if permit
            else fns.contribute(_args(contribution), salt)
        )
        receipt = self.client.transact(fn, estimate_at="pending")  # valid from the block after the commit
        return int(self._event_arg(receipt, self.datanets, "ContributionSubmitted", "contributionId"))

    def sign_contribution(self, contribution: ContributionInput, deadline: int) -> bytes:
        """This account's EIP-712 signature of `contribution`, for a relayer to submit."""
        assert self.client.account is not None
        nonce = self.contribution_nonce()
        return signing.sign_contribution(
            self.client.account, self.datanets.address, self.chain_id, contribution, nonce, deadline
        )

    def invalidate_nonce(self) -> TxReceipt:
        """Voids every contribution signature this account made and no one relayed yet."""
        return self.client.transact(self.datanets.functions.invalidateNonce())

    def contribution_nonce(self, account: str | None = None) -> int:
        who = Web3.to_checksum_address(account) if account else self.address
        return int(self.client.call(self.datanets.functions.nonces(who)))

    def relay_contribution(
        self,
        contribution: ContributionInput,
        contributor: str,
        deadline: int,
        signature: bytes,
        permit: Permit | None = None,
    ) -> int:
        """Sends someone else's signed contribution, paying the gas (this account relays): commits it
        for the contributor, then reveals it in the next block."""
        salt = self.commit_contribution(contribution, contributor)
        fn = self.datanets.functions.contributeBySig(
            _args(contribution),
            Web3.to_checksum_address(contributor),
            deadline,
            signature,
            _args(permit or Permit()),
            salt,
        )
        receipt = self.client.transact(fn, estimate_at="pending")
        return int(self._event_arg(receipt, self.datanets, "ContributionSubmitted", "contributionId"))

    def approve_contribution(self, contribution_id: int) -> TxReceipt:
        return self.client.transact(self.datanets.functions.approve(contribution_id))

    def reject_contribution(self, contribution_id: int, reason: str) -> TxReceipt:
        return self.client.transact(self.datanets.functions.reject(contribution_id, reason))

    def withdraw_contribution(self, contribution_id: int) -> TxReceipt:
        return self.client.transact(self.datanets.functions.withdraw(contribution_id))

    def datanet(self, datanet_id: int) -> Datanet:
        raw = _as_dict(self.client.call(self.datanets.functions.getDatanet(datanet_id)))
        return Datanet(id=datanet_id, **raw)

    def datanet_count(self) -> int:
        return int(self.client.call(self.datanets.functions.datanetCount()))

    def contribution(self, contribution_id: int) -> Contribution:
        raw = _as_dict(self.client.call(self.datanets.functions.getContribution(contribution_id)))
        return Contribution(id=contribution_id, **raw)

    def contribution_count(self) -> int:
        return int(self.client.call(self.datanets.functions.contributionCount()))

    def is_curator(self, datanet_id: int, account: str) -> bool:
        fn = self.datanets.functions.isCurator(datanet_id, Web3.to_checksum_address(account))
        return bool(self.client.call(fn))

    # ------------------------------------------------------------- node staking

    def stake(self, amount: int, permit: Permit | None = None) -> TxReceipt:
        fns = self.staking.functions
        fn = fns.stakeWithPermit(amount, permit.deadline, permit.v, permit.r, permit.s) if permit else fns.stake(amount)
        return self.client.transact(fn)

    def request_unbond(self, amount: int) -> TxReceipt:
        return self.client.transact(self.staking.functions.requestUnbond(amount))

    def withdraw_stake(self) -> TxReceipt:
        return self.client.transact(self.staking.functions.withdraw())

    def node_stake(self, node: str | None = None) -> NodeStake:
        who = Web3.to_checksum_address(node) if node else self.address
        return NodeStake(**_as_dict(self.client.call(self.staking.functions.stakeOf(who))))

    def min_node_stake(self) -> int:
        return int(self.client.call(self.staking.functions.minStake()))

    def is_eligible_node(self, node: str | None = None) -> bool:
        """Whether `node` (default: this account) may claim jobs (NodeStaking.isEligible)."""
        who = Web3.to_checksum_address(node) if node else self.address
        return bool(self.client.call(self.staking.functions.isEligible(who)))

    def unbonding_period(self) -> int:
        """Seconds between `request_unbond` and `withdraw_stake`."""
        return int(self.client.call(self.staking.functions.unbondingPeriod()))

    # ------------------------------------------------------------ jobs & models

    def post_job(self, params: JobParams, permit: Permit | None = None) -> int:
        fns = self.models.functions
        fn = (
            fns.postJobWithPermit(_args(params), permit.deadline, permit.v, permit.r, permit.s)
            if permit
            else fns.postJob(_args(params))
        )
        receipt = self.client.transact(fn)
        return int(self._event_arg(receipt, self.models, "JobPosted", "jobId"))

    def claim_job(self, job_id: int) -> TxReceipt:
        return self.client.transact(self.models.functions.claimJob(job_id))

    def cancel_job(self, job_id: int) -> TxReceipt:
        return self.client.transact(self.models.functions.cancelJob(job_id))

    def expire_job(self, job_id: int) -> TxReceipt:
        return self.client.transact(self.models.functions.expireJob(job_id))

    def reopen_job(self, job_id: int) -> TxReceipt:
        """Returns a claimed job whose node overran the maximum training time to open (anyone)."""
        return self.client.transact(self.models.functions.reopenJob(job_id))

    def bond_for(self, job_id: int) -> int:
        """The stake a claim of `job_id` reserves (ModelRegistry.bondFor)."""
        return int(self.client.call(self.models.functions.bondFor(job_id)))

    def max_training_time(self) -> int:
        """Seconds a node may hold a claimed job before anyone may reopen it."""
        return int(self.client.call(self.models.functions.maxTrainingTime()))

    def reveal_eval(self, job_id: int, eval_cid: str) -> TxReceipt:
        """Reveals the query set of a claimed job (poster only, once, after the claim block)."""
        return self.client.transact(self.models.functions.revealEval(job_id, eval_cid))

    def eval_reveal(self, job_id: int) -> EvalReveal:
        """The job's revealed query set (`revealed` False while the poster has not revealed it)."""
        raw = _as_dict(self.client.call(self.models.functions.getEval(job_id)))
        return EvalReveal(jobId=job_id, **raw)

    def submit_result(self, job_id: int, result: ResultParams) -> int:
        receipt = self.client.transact(self.models.functions.submitResult(job_id, _args(result)))
        return int(self._event_arg(receipt, self.models, "ModelRegistered", "modelId"))

    def finalize(self, job_id: int) -> TxReceipt:
        """Completes a submitted job after its challenge window (anyone): the model becomes final,
        the bond is released and the reward round opens."""
        return self.client.transact(self.models.functions.finalize(job_id), estimate_at="pending")

    def pending_time(self) -> int:
        """The timestamp the next block will have: what time-gated calls (finalize, settle) are
        checked against. A dev chain that mines only on transactions keeps its latest block's
        time still while idle; its pending block follows the clock."""
        block = self.client.rpc(lambda: self.client.w3.eth.get_block("pending"), "get pending block")
        return int(block["timestamp"])

    def finalizable_at(self, model_id: int) -> tuple[int, int]:
        """(chain time from which `model_id` may be finalized, challenges still open against it)."""
        at, open_ = self.client.call(self.models.functions.finalizableAt(model_id))
        return int(at), int(open_)

    def result_commitment(self, model_id: int) -> ResultCommitment:
        """What a challenge checks the result `model_id` against."""
        return ResultCommitment(**_as_dict(self.client.call(self.models.functions.resultCommitment(model_id))))

    # ------------------------------------------------------- staking parameters

    @property
    def timelock(self) -> Contract:
        return self._deployed("ProtocolTimelock")

    def _parameters_call(self, min_stake: int, unbonding_period: int) -> tuple[ChecksumAddress, bytes]:
        data = self.staking.encode_abi("setParameters", args=[min_stake, unbonding_period])
        return self.staking.address, bytes.fromhex(data.removeprefix("0x"))

    def parameter_change_id(self, min_stake: int, unbonding_period: int, salt: bytes = b"\0" * 32) -> bytes:
        """The timelock operation id of setting NodeStaking's parameters to these values."""
        target, data = self._parameters_call(min_stake, unbonding_period)
        fn = self.timelock.functions.hashOperation(target, 0, data, b"\0" * 32, salt)
        return bytes(self.client.call(fn))

    def propose_staking_parameters(self, min_stake: int, unbonding_period: int, salt: bytes = b"\0" * 32) -> bytes:
        """Schedules the change in the timelock (a proposer only); returns its operation id."""
        target, data = self._parameters_call(min_stake, unbonding_period)
        delay = int(self.client.call(self.timelock.functions.getMinDelay()))
        self.client.transact(self.timelock.functions.schedule(target, 0, data, b"\0" * 32, salt, delay))
        return self.parameter_change_id(min_stake, unbonding_period, salt)

    def execute_staking_parameters(self, min_stake: int, unbonding_period: int, salt: bytes = b"\0" * 32) -> TxReceipt:
        """Executes a scheduled change once its delay has passed (anyone)."""
        target, data = self._parameters_call(min_stake, unbonding_period)
        return self.client.transact(self.timelock.functions.execute(target, 0, data, b"\0" * 32, salt))

    def operation_ready_at(self, operation_id: bytes) -> int:
        """When a scheduled operation becomes executable (0: unknown, 1: done)."""
        return int(self.client.call(self.timelock.functions.getTimestamp(operation_id)))

    # ------------------------------------------------------------- challenges

    @property
    def challenges(self) -> Contract:
        return self._deployed("ResultChallenges")

    def challenge_bond(self) -> int:
        return int(self.client.call(self.challenges.functions.challengeBond()))

    def challenge_periods(self) -> tuple[int, int, int]:
        """(commit, reveal, answer) periods in seconds, counted from a result's registration."""
        f = self.challenges.functions
        return (
            int(self.client.call(f.commitPeriod())),
            int(self.client.call(f.revealPeriod())),
            int(self.client.call(f.answerPeriod())),
        )

    def commit_challenge(self, model_id: int, commitment: bytes) -> int:
        """Commits a challenge against `model_id` (approve the bond first); returns its id."""
        receipt = self.client.transact(self.challenges.functions.commit(model_id, commitment), estimate_at="pending")
        return int(self._event_arg(receipt, self.challenges, "ChallengeCommitted", "id"))

    def reveal_challenge(self, challenge_id: int, kind: ChallengeKind, evidence: bytes, salt: bytes) -> TxReceipt:
        """Reveals a committed challenge: valid from the block after its commit, so it is
        estimated in the pending block (on a dev chain that mines per transaction, the next one)."""
        fn = self.challenges.functions.reveal(challenge_id, int(kind), evidence, salt)
        return self.client.transact(fn, estimate_at="pending")

    def answer_challenge(self, challenge_id: int, evidence: bytes) -> TxReceipt:
        return self.client.transact(self.challenges.functions.answer(challenge_id, evidence), estimate_at="pending")

    def settle_challenge(self, challenge_id: int) -> TxReceipt:
        return self.client.transact(self.challenges.functions.settle(challenge_id), estimate_at="pending")

    def forfeit_challenge(self, challenge_id: int) -> TxReceipt:
        return self.client.transact(self.challenges.functions.forfeit(challenge_id), estimate_at="pending")

    def challenge(self, challenge_id: int) -> Challenge:
        raw = _as_dict(self.client.call(self.challenges.functions.getChallenge(challenge_id)))
        return Challenge(id=challenge_id, **raw)

    def challenge_count(self) -> int:
        return int(self.client.call(self.challenges.functions.challengeCount()))

    def challenges_of(self, model_id: int) -> list[Challenge]:
        """Every challenge committed against `model_id`, oldest first (from ChallengeCommitted logs)."""
        event = self.challenges.events.ChallengeCommitted
        logs = self.client.rpc(
            lambda: event.get_logs(
                from_block=self.deployment.deploy_block, argument_filters={"modelId": model_id}
            ),
            "get ChallengeCommitted logs",
        )
        return [self.challenge(int(log["args"]["id"])) for log in logs]

    # ------------------------------------------------------------------ court

    @property
    def court(self) -> Contract:
        return self._deployed("VerifierCourt")

    def job_cost(self, pool: int) -> int:
        """What posting a job with `pool` takes from the poster: the pool plus the verifier fee."""
        return pool + int(self.client.call(self.models.functions.verifierFeeOf(pool)))

    def join_court(self, amount: int) -> TxReceipt:
        """Stakes `amount` OPEN as a verifier (approves it first)."""
        self.approve(self.court.address, amount)
        return self.client.transact(self.court.functions.join(amount))

    def leave_court(self, amount: int) -> TxReceipt:
        return self.client.transact(self.court.functions.requestLeave(amount))

    def withdraw_court(self) -> TxReceipt:
        return self.client.transact(self.court.functions.withdraw())

    def claim_court_fees(self) -> TxReceipt:
        return self.client.transact(self.court.functions.claimFees())

    def verifier(self, account: str | None = None) -> VerifierStake:
        who = Web3.to_checksum_address(account or self.address)
        return VerifierStake(**_as_dict(self.client.call(self.court.functions.verifierOf(who))))

    def verifier_set(self) -> list[ChecksumAddress]:
        return [Web3.to_checksum_address(a) for a in self.client.call(self.court.functions.verifiers())]

    def court_fees(self, account: str | None = None) -> int:
        who = Web3.to_checksum_address(account or self.address)
        return int(self.client.call(self.court.functions.feesOf(who)))

    def min_verifier_stake(self) -> int:
        return int(self.client.call(self.court.functions.minVerifierStake()))

    def court_case(self, case_id: int) -> CourtCase:
        return CourtCase(id=case_id, **_as_dict(self.client.call(self.court.functions.getCase(case_id))))

    def case_claim(self, case_id: int) -> bytes:
        """The challenger's claim of case `case_id` (from its CaseOpened log: the court does not
        store it), or b"" when no such case was opened."""
        event = self.court.events.CaseOpened
        logs = self.client.rpc(
            lambda: event.get_logs(from_block=self.deployment.deploy_block, argument_filters={"caseId": case_id}),
            "get CaseOpened logs",
        )
        return bytes(logs[0]["args"]["claim"]) if logs else b""

    def court_round(self, case_id: int, round_index: int) -> CourtRound:
        return CourtRound(**_as_dict(self.client.call(self.court.functions.getRound(case_id, round_index))))

    def ballot(self, case_id: int, round_index: int, member: str | None = None) -> Ballot:
        who = Web3.to_checksum_address(member or self.address)
        return Ballot(**_as_dict(self.client.call(self.court.functions.ballotOf(case_id, round_index, who))))

    def draw_committee(self, case_id: int) -> TxReceipt:
        return self.client.transact(self.court.functions.draw(case_id), estimate_at="pending")

    def vote_commitment(
        self, case_id: int, round_index: int, vote: Vote, salt: bytes, member: str | None = None
    ) -> bytes:
        """What `commit_vote` seals: keccak256(abi.encode(caseId, round, member, vote, salt))."""
        who = Web3.to_checksum_address(member or self.address)
        return keccak(
            encode(["uint256", "uint8", "address", "uint8", "bytes32"], [case_id, round_index, who, int(vote), salt])
        )

    def commit_vote(self, case_id: int, commitment: bytes) -> TxReceipt:
        return self.client.transact(self.court.functions.commitVote(case_id, commitment), estimate_at="pending")

    def reveal_vote(self, case_id: int, vote: Vote, salt: bytes) -> TxReceipt:
        return self.client.transact(self.court.functions.revealVote(case_id, int(vote), salt), estimate_at="pending")

    def tally(self, case_id: int) -> TxReceipt:
        return self.client.transact(self.court.functions.tally(case_id), estimate_at="pending")

    def appeal(self, case_id: int) -> TxReceipt:
        """Appeals a case's verdict (its losing side; approves the appeal bond first)."""
        self.approve(self.court.address, int(self.client.call(self.court.functions.appealBond())))
        return self.client.transact(self.court.functions.appeal(case_id), estimate_at="pending")

    def close_case(self, case_id: int) -> TxReceipt:
        return self.client.transact(self.court.functions.close(case_id), estimate_at="pending")

    def job(self, job_id: int) -> Job:
        return Job(id=job_id, **_as_dict(self.client.call(self.models.functions.getJob(job_id))))

    def job_count(self) -> int:
        return int(self.client.call(self.models.functions.jobCount()))

    def model(self, model_id: int) -> Model:
        return Model(id=model_id, **_as_dict(self.client.call(self.models.functions.getModel(model_id))))

    def model_count(self) -> int:
        return int(self.client.call(self.models.functions.modelCount()))

    def models_by_datanet(self, datanet_id: int, offset: int = 0, limit: int = 100) -> list[int]:
        return list(self.client.call(self.models.functions.modelsByDatanet(datanet_id, offset, limit)))

    def models_by_base_model(self, base_hash: bytes, offset: int = 0, limit: int = 100) -> list[int]:
        return list(self.client.call(self.models.functions.modelsByBaseModel(base_hash, offset, limit)))

    def models_by_node(self, node: str, offset: int = 0, limit: int = 100) -> list[int]:
        fn = self.models.functions.modelsByNode(Web3.to_checksum_address(node), offset, limit)
        return list(self.client.call(fn))

    def lineage(self, model_id: int) -> list[int]:
        return list(self.client.call(self.models.functions.lineage(model_id)))

    # ----------------------------------------------------------------- rewards

    # Reward rounds are keyed by (funder, job id); the ModelRegistry, wired once as the distributor's
    # only funder, funds every job's round, so it is the default.

    def _funder(self, funder: str | None) -> ChecksumAddress:
        return Web3.to_checksum_address(funder) if funder else self.models.address

    def claim_reward(
        self, job_id: int, index: int, account: str, amount: int, proof: list[bytes], funder: str | None = None
    ) -> TxReceipt:
        fn = self.rewards.functions.claim(
            self._funder(funder), job_id, index, Web3.to_checksum_address(account), amount, proof
        )
        return self.client.transact(fn)

    def sweep(self, job_id: int, funder: str | None = None) -> TxReceipt:
        return self.client.transact(self.rewards.functions.sweep(self._funder(funder), job_id))

    def is_claimed(self, job_id: int, index: int, funder: str | None = None) -> bool:
        return bool(self.client.call(self.rewards.functions.isClaimed(self._funder(funder), job_id, index)))

    def reward_round(self, job_id: int, funder: str | None = None) -> Round:
        raw = self.client.call(self.rewards.functions.getRound(self._funder(funder), job_id))
        return Round(**_as_dict(raw))

    # ------------------------------------------------------ keys (private Datanets)

    def set_encryption_key(self, public_key: bytes) -> TxReceipt:
        """Publishes this account's X25519 encryption public key (32 bytes)."""
        return self.client.transact(self.keys.functions.setEncryptionKey(public_key))

    def encryption_key_of(self, account: str | None = None) -> bytes | None:
        """`account`'s published X25519 public key (default: this account); None if unpublished."""
        who = Web3.to_checksum_address(account) if account else self.address
        key = bytes(self.client.call(self.keys.functions.encryptionKeyOf(who)))
        return None if key == b"\0" * 32 else key

    def set_datanet_key(self, datanet_id: int, public_key: bytes, key_grants_cid: str) -> int:
        """Publishes a private Datanet's key (owner only); returns its key version."""
        fn = self.keys.functions.setDatanetKey(datanet_id, public_key, key_grants_cid)
        receipt = self.client.transact(fn)
        return int(self._event_arg(receipt, self.keys, "DatanetKeySet", "keyVersion"))

    def datanet_key(self, datanet_id: int, key_version: int | None = None) -> DatanetKey:
        """The current key of a Datanet, or version `key_version` of it."""
        if key_version is None:
            raw = self.client.call(self.keys.functions.datanetKey(datanet_id))
            public_key, version, cid = raw
        else:
            k = _as_dict(self.client.call(self.keys.functions.datanetKeyAt(datanet_id, key_version)))
            public_key, version, cid = k["publicKey"], key_version, k["keyGrantsCID"]
        return DatanetKey(
            datanetId=datanet_id, publicKey=bytes(public_key), keyVersion=version, keyGrantsCID=cid
        )

    def grant_access(self, datanet_id: int, grantee: str, job_id: int, grant_cid: str) -> TxReceipt:
        """Records a grant (owner or curator; job 0, a standing grant: owner only)."""
        fn = self.keys.functions.grantAccess(datanet_id, Web3.to_checksum_address(grantee), job_id, grant_cid)
        return self.client.transact(fn)

    def grant_of(self, datanet_id: int, grantee: str, job_id: int) -> AccessGrant | None:
        """The latest grant to `grantee` for `job_id` on a Datanet, or None."""
        who = Web3.to_checksum_address(grantee)
        g = _as_dict(self.client.call(self.keys.functions.grantOf(datanet_id, who, job_id)))
        if not g["grantCID"]:
            return None
        return AccessGrant(datanetId=datanet_id, grantee=who, jobId=job_id, **g)

    def access_grants(
        self,
        datanet_id: int | None = None,
        grantee: str | None = None,
        job_id: int | None = None,
        from_block: int | None = None,
    ) -> list[AccessGrant]:
        """`AccessGranted` events matching the given (indexed) filters, oldest first."""
        filters: dict[str, Any] = {}
        if datanet_id is not None:
            filters["datanetId"] = datanet_id
        if grantee is not None:
            filters["grantee"] = Web3.to_checksum_address(grantee)
        if job_id is not None:
            filters["jobId"] = job_id
        start = self.deployment.deploy_block if from_block is None else from_block
        event = self.keys.events.AccessGranted
        logs = self.client.rpc(
            lambda: event.get_logs(from_block=start, argument_filters=filters), "get AccessGranted logs"
        )
        return [AccessGrant(**dict(log["args"]), blockNumber=log["blockNumber"]) for log in logs]
