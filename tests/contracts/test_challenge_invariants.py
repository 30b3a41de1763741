"""Invariant fuzzing of the job life with the challenge window: random sequences of claims,
results (honest or forged), challenges (upheld or wrong), recomputation challenges before the
VerifierCourt and its committees' draws, votes (either way), reveals, tallies, appeals and
closes, finalizations, expiries, reopenings, reward claims and time, over three concurrent jobs,
two nodes and three verifiers, against the real contracts.

No exact model of each outcome: every call may succeed or revert, and after each one the
protocol's books must still balance (docs/protocol.md, "Invariants"):
- the registry holds exactly the pools of live jobs (open, claimed, submitted);
- the challenge contract holds exactly the bonds of challenges not yet decided or referred;
- the court holds the verifiers' stakes, the bonds of open cases, the fees it owes and the fees
  waiting for a staker, to within a few units of rounding;
- NodeStaking holds exactly every node's active plus unbonding stake, and a node's reserved
  bonds are exactly those of the jobs it holds (claimed or submitted);
- the distributor holds exactly what its rounds still owe, and only finalized results have one;
- a voided model is never finalized, a completed job's model is final;
- no token is created or lost (the burn address included).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import example, given
from hypothesis import strategies as st

from node.attribution.disputes import PROVEN_SCORE, ResultTrees, commitment, find_faults, new_salt
from node.chain.accounts import dev_account
from node.chain.deploy import OPEN
from node.chain.models import (
    CasePhase,
    ChallengeKind,
    ChallengeStatus,
    CourtCase,
    JobStatus,
    ModelStatus,
    ResultParams,
    Verdict,
    Vote,
)
from node.chain.protocol import Protocol
from node.daemon.court import CourtClerk
from node.errors import ContractRevertError
from node.rewards.merkle import StandardMerkleTree
from node.rewards.payout import ExampleRef, compute_payout
from node.rewards.scores_tree import ScoresTree, score_leaves
from node.rewards.shares import Share, reward_tree
from tests.conftest import TEST_DEPLOY, World
from tests.contracts.helpers_jobs import (
    contributors_share,
    create_datanets,
    frozen_clock,
    job_params,
    post_job,
    set_time,
    stake_node,
    total_owed,
)
from tests.contracts.test_protocol_properties import CHAIN_EXAMPLES, isolated, outcome

BURN = "0x000000000000000000000000000000000000dEaD"
BOND = TEST_DEPLOY.challenge_bond
SCORES = [4, -1, 2, 3, -2, 5]

OPS = st.lists(
    st.one_of(
        st.tuples(st.sampled_from(["claim", "submit", "forge", "challenge", "finalize", "expire", "reopen", "pay",
                                   "recompute", "court", "court", "appeal"]),
                  st.integers(0, 2), st.integers(0, 1)),
        st.tuples(st.just("advance"), st.sampled_from([1, 3, 7, 86_400]), st.just(0)),
    ),
    min_size=4,
    max_size=14,
)  # fmt: skip


def _case_or_none(a: Protocol, case_id: int) -> CourtCase | None:
    try:
        return a.court_case(case_id)
    except ContractRevertError:
        return None


class Fuzz:
    """One example's protocol: three jobs on one Datanet, two staked nodes, one challenger."""

    def __init__(self, w: World, state_dir: Path):
        """`state_dir`: where the verifiers' clerks keep their sealed votes (a fresh one per example)."""
        self.w = w
        self.nodes = [w.node, w.contributors[3]]
        self.challenger = w.relayer
        for n in self.nodes:
            stake_node(n, 4_000 * OPEN)
        self.verifiers = [w.admin.as_account(dev_account(i)) for i in (10, 11, 12)]
        for v in self.verifiers:
            w.admin.transfer(v.address, 2 * TEST_DEPLOY.min_verifier_stake)
            v.join_court(2 * TEST_DEPLOY.min_verifier_stake)
        self.votes = Vote.REPRODUCES  # what the committees vote next ("court" ops set it)
        self.clerks = [CourtClerk(v, state_dir / f"court-{v.address}.json", judge=lambda _model, _claim: self.votes)
                       for v in self.verifiers]  # fmt: skip
        ids, self.treasuries = create_datanets(w.curator, 1)
        self.jobs = [
            post_job(w.poster, job_params(w.now(), ids, pool=(k + 1) * 1_000 * OPEN, deadline_in=2 * 86_400))
            for k in range(3)
        ]
        self.params = [job_params(w.now(), ids, pool=(k + 1) * 1_000 * OPEN) for k in range(3)]
        self.trees: dict[int, tuple[ResultTrees | None, StandardMerkleTree, list[Share]]] = {}
        contracts = [w.admin.models, w.admin.rewards, w.admin.staking, w.admin.challenges, w.admin.court]
        people = [w.poster, *self.nodes, self.challenger, w.contributors[0], w.contributors[1], *self.verifiers]
        self.ledger = [*(p.address for p in people), *self.treasuries, *(c.address for c in contracts), BURN]
        self.total = self._sum()
        self.calls = 0  # operations run: each may floor one fee accrual per verifier (< 1 unit each)
        a = w.admin
        # What the court held before this example (other tests' fees): not this example's to explain.
        court_stakes = sum(x.active + x.leaving for x in (a.verifier(v.address) for v in self.verifiers))
        self.court0 = a.balance(a.court.address) - court_stakes - a.client.call(a.court.functions.undistributed())

    def _sum(self) -> int:
        return sum(self.w.admin.balance(a) for a in self.ledger)

    # ------------------------------------------------------------------ ops

    def run(self, op: str, k: int, who: int) -> str:
        self.calls += 1
        if op == "advance":
            set_time(self.w, self.w.now() + k)
            return "ok"
        job_id, node = self.jobs[k], self.nodes[who]
        fn = {
            "claim": lambda: node.claim_job(job_id),
            "submit": lambda: self._submit(node, k, forged=False),
            "forge": lambda: self._submit(node, k, forged=True),
            "challenge": lambda: self._challenge(k),
            "finalize": lambda: self.w.outsider.finalize(job_id),
            "expire": lambda: self.w.outsider.expire_job(job_id),
            "reopen": lambda: self.w.outsider.reopen_job(job_id),
            "pay": lambda: self._pay(k),
            "recompute": lambda: self._recompute(k),
            "court": lambda: self._court(Vote.FAULT if who else Vote.REPRODUCES),
            "appeal": lambda: self._appeal(),
        }[op]
        return outcome(fn)

    def _submit(self, node: Protocol, k: int, *, forged: bool) -> None:
        job_id = self.jobs[k]
        a, b = self.w.contributors[0].address, self.w.contributors[1].address
        refs = [(1, a)] * 3 + [(2, b)] * 3
        total = contributors_share(self.params[k], 1)
        payout = compute_payout(
            [ExampleRef(index=i, contribution_id=c, contributor=x) for i, (c, x) in enumerate(refs)],
            SCORES, total, self.treasuries[0],
        )  # fmt: skip
        leaves = score_leaves(refs, SCORES, ["0x" + "cd" * 32] * len(refs))
        if forged:  # a broken running total, and everything paid to the node
            leaves[2] = leaves[2].model_copy(update={"running_total": leaves[2].running_total + 99})
            shares = [Share(account=node.address, amount=total)]
        else:
            dust = [Share(account=self.treasuries[0], amount=payout.dust)] if payout.dust else []
            shares = [*payout.amounts, *dust]
        rewards = reward_tree(job_id, shares)
        scores_root = ScoresTree(leaves, check_order=False).root
        node.submit_result(job_id, ResultParams(
            adapterCID="bafyadapter", adapterHash=b"\x01" * 32, dataRoot=b"\x02" * 32, attributionRoot=rewards.root,
            attributionCID="bafyattribution", scoresRoot=scores_root, totalWeight=payout.total_weight,
            exampleCount=len(refs),
        ))  # fmt: skip
        model_id = self.w.admin.job(job_id).modelId
        self.trees[model_id] = (ResultTrees(leaves, rewards, self.w.admin.result_commitment(model_id)), rewards, shares)

    def _challenge(self, k: int) -> None:
        """A running-total challenge of the job's pending result: a real fault if it is forged,
        two honest neighbours (a wrong challenge) if not."""
        model_id = self.w.admin.job(self.jobs[k]).modelId
        if model_id not in self.trees:
            return  # nothing submitted to challenge
        trees, _, _ = self.trees[model_id]
        assert trees is not None
        committed = self.w.admin.result_commitment(model_id)
        faults = [f for f in find_faults(trees, committed) if f.kind == ChallengeKind.RUNNING_TOTAL]
        from eth_abi import encode

        evidence = faults[0].evidence if faults else encode(
            ["bool", PROVEN_SCORE, PROVEN_SCORE], [True, trees.proven(0), trees.proven(1)]
        )  # fmt: skip
        c, salt = self.challenger, new_salt()
        c.approve(c.challenges.address, BOND)
        cid = c.commit_challenge(model_id, commitment(ChallengeKind.RUNNING_TOTAL, evidence, salt))
        c.reveal_challenge(cid, ChallengeKind.RUNNING_TOTAL, evidence, salt)

    def _recompute(self, k: int) -> None:
        """A Recompute challenge of the job's pending result (whatever it holds: the committee decides)."""
        model_id = self.w.admin.job(self.jobs[k]).modelId
        if model_id == 0:
            return
        from eth_abi import encode

        evidence, c, salt = encode(["uint256", "string"], [0, "does not reproduce"]), self.challenger, new_salt()
        c.approve(c.challenges.address, BOND)
        cid = c.commit_challenge(model_id, commitment(ChallengeKind.RECOMPUTE, evidence, salt))
        c.reveal_challenge(cid, ChallengeKind.RECOMPUTE, evidence, salt)

    def _court(self, vote: Vote) -> None:
        """Every verifier's daemon takes the step due in each open case (draw, vote `vote`, reveal,
        tally, close), after a block so a seed is mined."""
        self.votes = vote
        self.w.rpc("evm_mine")
        for clerk in self.clerks:
            clerk.step_all()

    def _appeal(self) -> None:
        """The losing side of every appealable case appeals."""
        a = self.w.admin
        for case_id in self.clerks[0].open_cases():
            case = a.court_case(case_id)
            if case.phase == CasePhase.APPEALABLE:
                loser = case.node if case.verdict.name == "UPHELD" else case.challenger
                by = next(p for p in [*self.nodes, self.challenger] if p.address == loser)
                by.appeal(case_id)

    def _pay(self, k: int) -> None:
        """Every leaf of the job's final reward tree claimed by the contributors' relayer."""
        job = self.w.admin.job(self.jobs[k])
        if job.modelId not in self.trees:
            return  # no result: no tree to claim from
        _, rewards, _ = self.trees[job.modelId]
        for i, (_, index, account, amount) in enumerate(rewards.values()):
            self.w.outsider.claim_reward(job.id, int(index), account, int(amount), rewards.proof(i))

    # ------------------------------------------------------------ invariants

    def check(self) -> None:
        a = self.w.admin
        jobs = [a.job(j) for j in self.jobs]
        live = [j for j in jobs if j.status in (JobStatus.OPEN, JobStatus.CLAIMED, JobStatus.SUBMITTED)]
        assert a.balance(a.models.address) == sum(j.pool + j.verifierFee for j in live)
        # The court: stakes, open cases' bonds, fees owed (earned or accrued) and fees waiting for a
        # staker; it never owes more than it holds, and what it holds beyond that is the flooring of
        # accruals (under a unit per verifier per accrual, at most one per open case per operation).
        stakes = sum(v.active + v.leaving for v in (a.verifier(x.address) for x in self.verifiers))
        # Every revealed Recompute challenge has a case, unless it was moot at its reveal.
        referred = [
            i for i in range(1, a.challenge_count() + 1)
            if a.challenge(i).kind == ChallengeKind.RECOMPUTE and a.challenge(i).status != ChallengeStatus.COMMITTED
        ]  # fmt: skip
        cases = [c for c in (_case_or_none(a, i) for i in referred) if c is not None]
        assert all(a.challenge(i).status == ChallengeStatus.MOOT for i in set(referred) - {c.id for c in cases})
        bonds = sum(c.bond + c.appealBond for c in cases if c.phase != CasePhase.CLOSED)
        owed = sum(a.court_fees(x.address) for x in self.verifiers) + a.client.call(a.court.functions.undistributed())
        held = a.balance(a.court.address) - self.court0
        dust = len(self.verifiers) * len(self.jobs) * (self.calls + 1)
        assert stakes + bonds + owed <= held <= stakes + bonds + owed + dust
        assert all(c.bond == 0 and c.appealBond == 0 for c in cases if c.phase == CasePhase.CLOSED)
        for c in cases:
            ch = a.challenge(c.id)
            assert (ch.status == ChallengeStatus.REFERRED) == (c.phase != CasePhase.CLOSED), (ch, c)
        undecided = [
            c for c in (a.challenge(i) for i in range(1, a.challenge_count() + 1))
            if c.status in (ChallengeStatus.COMMITTED, ChallengeStatus.ANSWERABLE)
        ]  # fmt: skip
        assert a.balance(a.challenges.address) == BOND * len(undecided)
        stakes = [n.node_stake() for n in self.nodes]
        assert a.balance(a.staking.address) == sum(s.active + s.unbonding for s in stakes)
        for i, (n, s) in enumerate(zip(self.nodes, stakes, strict=True)):
            held = [j for j in jobs if j.status in (JobStatus.CLAIMED, JobStatus.SUBMITTED) and j.node == n.address]
            assert (s.reserved, s.jobs) == (sum(j.bond for j in held), len(held)), i
            assert s.reserved <= s.active
        assert a.balance(a.rewards.address) == total_owed(a)
        for j in jobs:
            has_round = a.reward_round(j.id).root != b"\0" * 32
            assert has_round == (j.status == JobStatus.COMPLETED), j
            if j.status == JobStatus.COMPLETED:
                assert a.model(j.modelId).status == ModelStatus.FINALIZED
        for model_id in range(1, a.model_count() + 1):
            m = a.model(model_id)
            if m.status == ModelStatus.VOIDED:
                assert a.job(m.jobId).modelId != model_id
        assert self._sum() == self.total


@CHAIN_EXAMPLES
@given(ops=OPS)
@example(  # a forged result challenged and voided, reclaimed by the other node, delivered honestly, paid
    ops=[("claim", 0, 0), ("forge", 0, 0), ("challenge", 0, 0), ("claim", 0, 1), ("submit", 0, 1),
         ("challenge", 0, 0), ("advance", 7, 0), ("finalize", 0, 0), ("pay", 0, 0), ("finalize", 0, 0)],
)  # fmt: skip
@example(  # a forged result nobody challenges is finalized: the window never extends (and pays the node)
    ops=[("claim", 1, 1), ("forge", 1, 1), ("advance", 3, 0), ("challenge", 1, 0), ("advance", 7, 0),
         ("finalize", 1, 0), ("pay", 1, 0), ("expire", 1, 0), ("reopen", 1, 0)],
)  # fmt: skip
def test_the_books_balance_under_any_sequence_with_challenges(world: World, ops: list[tuple[str, int, int]]) -> None:
    with isolated(world) as w, frozen_clock(w, w.now() + 1), tempfile.TemporaryDirectory(prefix="court-") as tmp:
        fuzz = Fuzz(w, Path(tmp))
        fuzz.check()
        for op, k, who in ops:
            fuzz.run(op, k, who)
            fuzz.check()


def test_the_fuzzed_court_operations_do_what_they_say(world: World) -> None:
    """The harness's court: an honest result referred to the committee is upheld by Fault votes,
    the node appeals, a Reproduces appeal committee rejects the challenge for good, and the result
    is finalized and paid."""
    ops = [("claim", 0, 0), ("submit", 0, 0), ("recompute", 0, 0), ("court", 0, 1), ("court", 0, 1),
           ("advance", 3, 0), ("court", 0, 1), ("advance", 3, 0), ("court", 0, 1), ("appeal", 0, 0),
           ("court", 0, 0), ("court", 0, 0), ("advance", 3, 0), ("court", 0, 0), ("advance", 3, 0),
           ("court", 0, 0), ("advance", 7, 0), ("finalize", 0, 0), ("pay", 0, 0)]  # fmt: skip
    with isolated(world) as w, frozen_clock(w, w.now() + 1), tempfile.TemporaryDirectory(prefix="court-") as tmp:
        fuzz = Fuzz(w, Path(tmp))
        got = []
        for op, k, who in ops:
            got.append(fuzz.run(op, k, who))
            fuzz.check()
        a = w.admin
        assert got == ["ok"] * len(ops), got
        case = a.court_case(1)
        assert (case.phase, case.verdict, case.round) == (CasePhase.CLOSED, Verdict.REJECTED, 2)
        assert a.challenge(1).status == ChallengeStatus.REJECTED
        assert a.job(fuzz.jobs[0]).status == JobStatus.COMPLETED
        assert sum(a.court_fees(v.address) for v in fuzz.verifiers) > 0


def test_the_fuzzed_operations_do_what_they_say(world: World) -> None:
    """The harness itself: a forged result is voided by its challenge, the job is reclaimed and
    delivered honestly, a wrong challenge of that result pays the node, and it is finalized and paid."""
    ops = [("claim", 0, 0), ("forge", 0, 0), ("challenge", 0, 0), ("claim", 0, 1), ("submit", 0, 1),
           ("challenge", 0, 0), ("finalize", 0, 0), ("advance", 7, 0), ("finalize", 0, 0), ("pay", 0, 0)]  # fmt: skip
    with isolated(world) as w, frozen_clock(w, w.now() + 1), tempfile.TemporaryDirectory(prefix="court-") as tmp:
        fuzz = Fuzz(w, Path(tmp))
        got = [fuzz.run(op, k, who) for op, k, who in ops]
        fuzz.check()
        assert got == ["ok"] * 6 + ["ModelRegistryChallengeWindowOpen", "ok", "ok", "ok"]
        a = w.admin
        assert [a.challenge(i).status for i in (1, 2)] == [ChallengeStatus.UPHELD, ChallengeStatus.REJECTED]
        assert [a.model(i).status for i in (1, 2)] == [ModelStatus.VOIDED, ModelStatus.FINALIZED]
        assert a.job(fuzz.jobs[0]).status == JobStatus.COMPLETED and a.reward_round(fuzz.jobs[0]).claimed > 0
