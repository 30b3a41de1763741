"""The Rewards page: every reward round, and one contributor's rewards with a Claim button each.

The contributor is the signed-in wallet, or any address typed in (rewards are public). Per
finalized model: the attribution weight, the amount, claimed or not, from `job_rewards` (the
function behind `datanet rewards`, which checks the published tree against the on-chain root);
then inference (epoch) rewards from `epoch_rewards`. A claim is planned from the same leaves,
recomputed on the server (the page sends only which leaf), and sent by the wallet, or by the
node's keystore for the local operator. `RewardDistributor` pays the leaf's account whoever
sends the claim, so anyone may claim for anyone.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from web3 import Web3

from node.chain.protocol import Protocol
from node.errors import NodeError, StorageError
from node.rewards.claims import JobReward, RewardTreeError, job_rewards, rewarded_models
from node.rewards.epoch_claims import EpochRewardsView, epoch_rewards
from node.web.site import FormSession, PageSession, render, web_of
from node.web.txs import ActionError, Step, node_signer, protocol_of, run_steps, sender_of, wallet_plan

router = APIRouter(include_in_schema=False)


def chain_now(p: Protocol) -> int:
    return int(p.client.w3.eth.get_block("latest")["timestamp"])


def account_rewards(p: Protocol, store: Any, account: str) -> tuple[list[JobReward], list[str], EpochRewardsView]:
    """`account`'s job rewards (and notes on models whose documents cannot be used) and epoch rewards."""
    now, jobs, notes = chain_now(p), [], []
    for m in rewarded_models(p):
        try:
            jobs.append(job_rewards(p, store, m, account, now))
        except (RewardTreeError, StorageError, NodeError, OSError) as e:
            notes.append(f"model #{m.id} (job #{m.jobId}): {str(e).splitlines()[0][:240]}")
    return jobs, notes, epoch_rewards(p, store, account, now)


@router.get("/rewards")
def rewards(request: Request, session: PageSession, address: str = "") -> Response:
    """Each model's reward round; with an address (or a connected wallet), that account's rewards."""
    s = web_of(request).services
    p = s.protocol
    rounds: list[tuple[Any, Any]] = []
    who, problem = (address.strip() or session.wallet or ""), None
    jobs: list[JobReward] = []
    notes: list[str] = []
    epochs = None
    if p is not None:
        for model_id in range(p.model_count(), 0, -1)[:50]:
            m = p.model(model_id)
            rnd = p.reward_round(m.jobId)
            if bytes(rnd.root) != b"\0" * 32:
                rounds.append((m, rnd))
        if who and not Web3.is_address(who):
            who, problem = "", f"'{address}' is not an address (0x followed by 40 hex digits)."
        elif who:
            who = Web3.to_checksum_address(who)
            jobs, notes, epochs = account_rewards(p, s.store, who)
    return render(request, "rewards.html", active="rewards", rounds=rounds, chain=p is not None, who=who,
                  problem=problem, jobs=jobs, notes=notes, epochs=epochs, wallet=session.wallet,
                  operator=session.is_operator, now=chain_now(p) if p is not None else 0)  # fmt: skip


async def _claim_steps(request: Request, p: Protocol) -> list[Step]:
    """The claim of the leaf the page names, rebuilt from the published tree (proof checked)."""
    body = await request.json()
    if not isinstance(body, dict) or not Web3.is_address(str(body.get("account", ""))):
        raise ActionError("Send {kind, account, index, job | funder and epoch} as JSON.")
    account, index = Web3.to_checksum_address(str(body["account"])), int(body.get("index", -1))
    store = web_of(request).services.store
    if body.get("kind") == "epoch":
        funder, epoch = str(body.get("funder", "")), int(body.get("epoch", -1))
        view = epoch_rewards(p, store, account, chain_now(p))
        for e in view.rewards:
            for leaf in e.leaves:
                if leaf.funder.lower() == funder.lower() and leaf.epoch == epoch and leaf.index == index:
                    _claimable(e.status, leaf.claimed, f"inference epoch {e.node_epoch} of {e.node}")
                    proof = [bytes.fromhex(h[2:]) for h in leaf.proof]
                    fn = p.rewards.functions.claimEpoch(
                        leaf.funder, leaf.epoch, leaf.index, leaf.account, leaf.amount, proof
                    )
                    return [
                        Step(f"Claim {leaf.amount / 1e18:g} OPEN from inference epoch {e.node_epoch}", fn, "latest")
                    ]
        raise ActionError(f"{account} has no leaf {index} in epoch round {epoch} of {funder}.")
    job = int(body.get("job", -1))
    for m in rewarded_models(p):
        if m.jobId != job:
            continue
        r = job_rewards(p, store, m, account, chain_now(p))
        for x in r.leaves:
            if x.index == index:
                _claimable(r.status, x.claimed, f"job #{job}")
                fn = p.rewards.functions.claim(p.models.address, x.job_id, x.index, x.account, x.amount,
                                               [bytes.fromhex(h[2:]) for h in x.proof])  # fmt: skip
                return [Step(f"Claim {x.amount / 1e18:g} OPEN from job #{job}", fn, "latest")]
    raise ActionError(f"{account} has no reward leaf {index} in job #{job} (`datanet rewards --job {job}`).")


def _claimable(status: str, claimed: bool, what: str) -> None:
    if claimed:
        raise ActionError(f"This reward from {what} is already claimed.")
    if status in ("swept", "window-closed"):
        raise ActionError(f"The claim window of {what} closed; unclaimed rewards go back to the poster.")


@router.post("/rewards/claim/plan")
async def claim_plan(request: Request, session: FormSession) -> JSONResponse:
    sender = sender_of(session)
    p = protocol_of(request)
    return wallet_plan(p, await _claim_steps(request, p), sender)


@router.post("/rewards/claim/keystore")
async def claim_keystore(request: Request, session: FormSession) -> JSONResponse:
    p = node_signer(request, "Claiming with the node's wallet")
    return JSONResponse({"txs": run_steps(p, await _claim_steps(request, p))})


__all__ = ["account_rewards", "router"]
