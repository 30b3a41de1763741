"""Which contributions a job may train on, read from the chain.

Contribution ids of a Datanet come from its `ContributionSubmitted` logs (filtered by the indexed
Datanet id, so the cost follows that Datanet's size, not the chain's); each one's status is then
read from the registry *at the same block*, so the answer is one consistent snapshot even while
curators keep working. Credit order is commitment order (earliest committed first), then
approval, then id.
"""

from __future__ import annotations

from web3.types import BlockIdentifier

from node.chain.models import Contribution, ContributionStatus, Datanet
from node.chain.protocol import Protocol


def contribution_ids(protocol: Protocol, datanet_id: int, to_block: int) -> list[int]:
    """All contribution ids ever submitted to `datanet_id`, up to `to_block`."""
    event = protocol.datanets.events.ContributionSubmitted
    logs = protocol.client.rpc(
        lambda: event.get_logs(
            from_block=protocol.deployment.deploy_block,
            to_block=to_block,
            argument_filters={"datanetId": datanet_id},
        ),
        "get ContributionSubmitted logs",
    )
    return sorted(int(log["args"]["contributionId"]) for log in logs)


def contribution_at(protocol: Protocol, contribution_id: int, block: BlockIdentifier) -> Contribution:
    fn = protocol.datanets.functions.getContribution(contribution_id)
    raw = protocol.client.call(fn, block)
    return Contribution(id=contribution_id, **raw._asdict())


def datanet_at(protocol: Protocol, datanet_id: int, block: BlockIdentifier) -> Datanet:
    raw = protocol.client.call(protocol.datanets.functions.getDatanet(datanet_id), block)
    return Datanet(id=datanet_id, **raw._asdict())


def approved_contributions(protocol: Protocol, datanet_id: int, block: int) -> list[Contribution]:
    """Approved (not pending, rejected or withdrawn) contributions of a Datanet at `block`,
    in credit order: earliest commitment first (who had the data first), then approval, then id."""
    found = [contribution_at(protocol, cid, block) for cid in contribution_ids(protocol, datanet_id, block)]
    approved = [c for c in found if c.status == ContributionStatus.APPROVED]
    return sorted(approved, key=lambda c: (c.committedAt, c.decidedAt, c.id))


def submitted_ids(protocol: Protocol, **argument_filters: object) -> list[int]:
    """Contribution ids from `ContributionSubmitted` logs matching indexed-argument filters
    (`datanetId=...` and/or `contributor=...`), up to the latest block."""
    event = protocol.datanets.events.ContributionSubmitted
    logs = protocol.client.rpc(
        lambda: event.get_logs(
            from_block=protocol.deployment.deploy_block, argument_filters=argument_filters
        ),
        "get ContributionSubmitted logs",
    )
    return sorted(int(log["args"]["contributionId"]) for log in logs)
