"""Invariant fuzzing of the job life with the challenge window: random sequences of claims,
results (honest or forged), challenges (upheld or wrong), finalizations, expiries, reopenings,
reward claims and time, over three concurrent jobs and two nodes, against the real contracts.

No exact model of each outcome: every call may succeed or revert, and after each one the
protocol's books must still balance (docs/protocol.md, "Invariants"):
- the registry holds exactly the pools of live jobs (open, claimed, submitted);
- the challenge contract holds exactly the bonds of challenges not yet decided;
- NodeStaking holds exactly every node's active plus unbonding stake, and a node's reserved
  bonds are exactly those of the jobs it holds (claimed or submitted);
- the distributor holds exactly what its rounds still owe, and only finalized results have one;
- a voided model is never finalized, a completed job's model is final;
- no token is created or lost (the burn address included).
"""

from __future__ import annotations

from hypothesis import example, given
from hypothesis import strategies as st

from node.attribution.disputes import PROVEN_SCORE, ResultTrees, commitment, find_faults, new_salt
from node.chain.deploy import OPEN
from node.chain.models import ChallengeKind, ChallengeStatus, JobStatus, ModelStatus, ResultParams
from node.chain.protocol import Protocol
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
        st.tuples(st.sampled_from(["claim", "submit", "forge", "challenge", "finalize", "expire", "reopen", "pay"]),
                  st.integers(0, 2), st.integers(0, 1)),
        st.tuples(st.just("advance"), st.sampled_from([1, 3, 7, 86_400]), st.just(0)),
    ),
    min_size=4,
    max_size=14,
)  # fmt: skip


class Fuzz:
    """One example's protocol: three jobs on one Datanet, two staked nodes, one challenger."""

    def __init__(self, w: World):
        self.w = w
        self.nodes = [w.node, w.contributors[3]]
        self.challenger = w.relayer
        for n in self.nodes:
            stake_node(n, 4_000 * OPEN)
        ids, self.treasuries = create_datanets(w.curator, 1)
        self.jobs = [
            post_job(w.poster, job_params(w.now(), ids, pool=(k + 1) * 1_000 * OPEN, deadline_in=2 * 86_400))
            for k in range(3)
        ]
        self.params = [job_params(w.now(), ids, pool=(k + 1) * 1_000 * OPEN) for k in range(3)]
        self.trees: dict[int, tuple[ResultTrees | None, StandardMerkleTree, list[Share]]] = {}
        contracts = [w.admin.models, w.admin.rewards, w.admin.staking, w.admin.challenges, w.admin.court]
        people = [w.poster, *self.nodes, self.challenger, w.contributors[0], w.contributors[1]]
        self.ledger = [*(p.address for p in people), *self.treasuries, *(c.address for c in contracts), BURN]
        self.total = self._sum()
        a = w.admin
        self.court0 = (a.balance(a.court.address), a.client.call(a.court.functions.undistributed()))

    def _sum(self) -> int:
        return sum(self.w.admin.balance(a) for a in self.ledger)

    # ------------------------------------------------------------------ ops

    def run(self, op: str, k: int, who: int) -> str:
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
        # No verifier is staked here: every finalized job's fee waits in the court, undistributed.
        paid_fees = sum(j.verifierFee for j in jobs if j.status == JobStatus.COMPLETED)
        court_now = (a.balance(a.court.address), a.client.call(a.court.functions.undistributed()))
        assert court_now == (self.court0[0] + paid_fees, self.court0[1] + paid_fees)
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
    with isolated(world) as w, frozen_clock(w, w.now() + 1):
        fuzz = Fuzz(w)
        fuzz.check()
        for op, k, who in ops:
            fuzz.run(op, k, who)
            fuzz.check()


def test_the_fuzzed_operations_do_what_they_say(world: World) -> None:
    """The harness itself: a forged result is voided by its challenge, the job is reclaimed and
    delivered honestly, a wrong challenge of that result pays the node, and it is finalized and paid."""
    ops = [("claim", 0, 0), ("forge", 0, 0), ("challenge", 0, 0), ("claim", 0, 1), ("submit", 0, 1),
           ("challenge", 0, 0), ("finalize", 0, 0), ("advance", 7, 0), ("finalize", 0, 0), ("pay", 0, 0)]  # fmt: skip
    with isolated(world) as w, frozen_clock(w, w.now() + 1):
        fuzz = Fuzz(w)
        got = [fuzz.run(op, k, who) for op, k, who in ops]
        fuzz.check()
        assert got == ["ok"] * 6 + ["ModelRegistryChallengeWindowOpen", "ok", "ok", "ok"]
        a = w.admin
        assert [a.challenge(i).status for i in (1, 2)] == [ChallengeStatus.UPHELD, ChallengeStatus.REJECTED]
        assert [a.model(i).status for i in (1, 2)] == [ModelStatus.VOIDED, ModelStatus.FINALIZED]
        assert a.job(fuzz.jobs[0]).status == JobStatus.COMPLETED and a.reward_round(fuzz.jobs[0]).claimed > 0
