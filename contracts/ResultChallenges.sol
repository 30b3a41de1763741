// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {MerkleProof} from "@openzeppelin/contracts/utils/cryptography/MerkleProof.sol";
import {DatanetRegistry} from "./DatanetRegistry.sol";
import {IResultChallenges, ModelRegistry} from "./ModelRegistry.sol";
import {IChallengeVerdicts, VerifierCourt} from "./VerifierCourt.sol";

/// @title ResultChallenges
/// @notice The challenge window of every result the ModelRegistry registers, and the on-chain
/// arithmetic disputes over it: no referee, Merkle proofs against the roots the result committed.
///
/// A window has three fixed phases counted from the result's registration, and never extends:
/// commits (`commitPeriod`), reveals (`revealPeriod`), answers (`answerPeriod`). A challenger
/// first commits `keccak256(abi.encode(kind, evidence, salt))` with a bond, then reveals it at a
/// later block: a challenge seen in the mempool cannot be copied, because a copy's commit comes
/// later and the first reveal settles the result. A revealed challenge either proves a fault at
/// once (the result is voided: {ModelRegistry.voidResult}) or does not (its bond pays the node),
/// except {Kind.RewardLeaf}, which the node must answer with the contributions that justify the
/// leaf before its deadline or lose the result. An unrevealed commit's bond goes to the node.
///
/// Kinds (leaves of the scores tree are `(index, contributionId, contributor, score,
/// runningTotal, gradientsHash)` in manifest order, of the data tree `(index, contributionId,
/// contributor, exampleHash)`, of the reward tree `(jobId, index, account, amount)`):
/// - RunningTotal: a leaf whose running total is not its predecessor's plus its score.
/// - IndexOutOfRange: a scores leaf with an index at or past the committed example count.
/// - DuplicateIndex: two different scores leaves with the same index.
/// - BrokenContribution: one contribution id under two contributors, or split by another
///   contribution (a contribution's examples are contiguous).
/// - DataMismatch: a scores leaf and the data leaf of the same index naming different
///   contributions or contributors, or a data leaf past the example count.
/// - RewardLeaf: a reward leaf the node must justify: `amount = floor(total * w / W)` with `w`
///   the clipped score sums of the account's contributions (or, when every shown contribution is
///   non-positive and `W` is the example count, their example counts), or the dust leaf.
/// - DataNotPermitted: a data leaf whose contribution was not approved, for that contributor, in
///   one of the job's Datanets when the job was claimed (unknown, pending, rejected, withdrawn
///   unapproved, approved after the claim block, another Datanet's, or another contributor's): the
///   node trained on data it had no right to.
/// - Recompute: the committed scores (and so `W`) do not reproduce, or an artifact cannot be
///   fetched. No proof fits on-chain: the challenge and its bond go to the {VerifierCourt}, whose
///   committee of staked verifiers reruns `datanet verify` and votes; its verdict comes back
///   through {decide}. The evidence is `abi.encode(uint256 exampleIndex, string reason)`, for them.
contract ResultChallenges is IResultChallenges, IChallengeVerdicts {
    using SafeERC20 for IERC20;

    enum Kind {
        RunningTotal,
        IndexOutOfRange,
        DuplicateIndex,
        BrokenContribution,
        DataMismatch,
        RewardLeaf,
        Recompute,
        DataNotPermitted
    }

    enum Status {
        None,
        Committed, // bond escrowed, evidence hidden
        Answerable, // a revealed RewardLeaf challenge waiting for the node's answer
        Upheld, // fault proven (or unanswered): the result was voided, bond returned
        Rejected, // no fault: bond paid to the node
        Forfeited, // never revealed: bond paid to the node
        Moot, // the result was voided by another challenge first: bond returned
        Referred, // a Recompute challenge before the VerifierCourt: the court holds its bond
        Lapsed // the court found no quorum twice: bond returned
    }

    struct ScoreLeaf {
        uint256 index;
        uint256 contributionId;
        address contributor;
        int256 score;
        int256 runningTotal;
        bytes32 gradientsHash;
    }

    struct ProvenScore {
        ScoreLeaf leaf;
        bytes32[] proof;
    }

    struct DataLeaf {
        uint256 index;
        uint256 contributionId;
        address contributor;
        bytes32 exampleHash;
    }

    struct ProvenData {
        DataLeaf leaf;
        bytes32[] proof;
    }

    /// @notice A reward leaf and its proof against the result's attribution root.
    struct RewardClaim {
        uint256 index;
        address account;
        uint256 amount;
        bytes32[] proof;
    }

    /// @notice One whole contribution in the node's answer: its first and last leaves, and the
    /// leaves just outside it (absent at the ends of the tree), which show it is whole.
    struct Run {
        ProvenScore first;
        ProvenScore last;
        ProvenScore before; // index first-1 (ignored when first.index == 0)
        ProvenScore next; // index last+1 (ignored when last.index == exampleCount-1)
    }

    struct Challenge {
        uint256 modelId;
        address challenger;
        Status status;
        Kind kind;
        uint64 committedBlock;
        uint64 answerDeadline;
        bytes32 commitment;
        address account; // RewardLeaf: the challenged leaf's account and amount
        uint256 amount;
    }

    /// @notice Bounds of each window phase: seconds on a dev chain, days on a real one.
    uint64 public constant MIN_PERIOD = 2 seconds;
    uint64 public constant MAX_PERIOD = 30 days;

    IERC20 public immutable token;
    ModelRegistry public immutable registry;
    /// @notice The account that wires {court}, once, at deployment; it has no other power.
    address public immutable deployer;
    /// @notice The VerifierCourt that decides Recompute challenges (it references this contract,
    /// so it is deployed after it and wired once by {setCourt}); until then none can be revealed.
    address public court;
    /// @notice OPEN a challenger escrows per challenge: it pays the node for a wrong challenge.
    uint256 public immutable challengeBond;
    uint64 public immutable commitPeriod;
    uint64 public immutable revealPeriod;
    uint64 public immutable answerPeriod;

    uint256 private _count;
    mapping(uint256 id => Challenge) private _challenges;
    mapping(uint256 modelId => uint256) private _open;

    error ChallengeInvalidParameter(string parameter);
    error ChallengeUnknown(uint256 id);
    error ChallengeWrongStatus(uint256 id, Status status);
    error ChallengeNotPending(uint256 modelId);
    error ChallengeCommitsClosed(uint256 modelId, uint256 commitEnd);
    error ChallengeRevealsClosed(uint256 modelId, uint256 revealEnd);
    error ChallengeRevealsOpen(uint256 modelId, uint256 revealEnd);
    error ChallengeRevealTooEarly(uint256 id, uint64 committedBlock);
    error ChallengeNotChallenger(uint256 id, address caller);
    error ChallengeWrongCommitment(uint256 id);
    error ChallengeNotNode(uint256 id, address caller);
    error ChallengeAnswerClosed(uint256 id, uint64 answerDeadline);
    error ChallengeAnswerOpen(uint256 id, uint64 answerDeadline);
    error ChallengeBadAnswer(uint256 id, string reason);
    error ChallengeNotDeployer(address caller);
    error ChallengeCourtSet(address court);
    error ChallengeNotCourt(address caller);

    /// @notice Emitted when `challenger` commits challenge `id` against `modelId`, escrowing `bond`.
    event ChallengeCommitted(uint256 indexed id, uint256 indexed modelId, address indexed challenger, uint256 bond);
    /// @notice Emitted when challenge `id` is revealed; `answerDeadline` is 0 unless the node must answer.
    event ChallengeRevealed(uint256 indexed id, uint256 indexed modelId, Kind kind, uint64 answerDeadline);
    /// @notice Emitted when challenge `id` ends, with who received its bond.
    event ChallengeResolved(uint256 indexed id, uint256 indexed modelId, Status status, address bondTo);
    /// @notice Emitted once, when the deployment wires the court.
    event CourtSet(address indexed court);

    /// @param token_ The OPEN token.
    /// @param registry_ The ModelRegistry whose results are challenged (it must then name this contract).
    /// @param challengeBond_ OPEN per challenge; non-zero.
    /// @param commitPeriod_ Seconds after registration in which challenges may be committed.
    /// @param revealPeriod_ Seconds after that in which they may be revealed.
    /// @param answerPeriod_ Seconds the node has to answer a revealed RewardLeaf challenge.
    constructor(
        IERC20 token_,
        ModelRegistry registry_,
        uint256 challengeBond_,
        uint64 commitPeriod_,
        uint64 revealPeriod_,
        uint64 answerPeriod_
    ) {
        if (challengeBond_ == 0) revert ChallengeInvalidParameter("challengeBond");
        _checkPeriod(commitPeriod_, "commitPeriod");
        _checkPeriod(revealPeriod_, "revealPeriod");
        _checkPeriod(answerPeriod_, "answerPeriod");
        token = token_;
        registry = registry_;
        challengeBond = challengeBond_;
        commitPeriod = commitPeriod_;
        revealPeriod = revealPeriod_;
        answerPeriod = answerPeriod_;
        deployer = msg.sender;
    }

    /// @notice Wires the VerifierCourt: the deployer only, once. Emits {CourtSet}.
    function setCourt(address court_) external {
        if (msg.sender != deployer) revert ChallengeNotDeployer(msg.sender);
        if (court != address(0)) revert ChallengeCourtSet(court);
        if (court_ == address(0)) revert ChallengeInvalidParameter("court");
        court = court_;
        emit CourtSet(court_);
    }

    // ----------------------------------------------------------------- Challenger

    /// @notice Commits a challenge against the pending result `modelId`, escrowing `challengeBond`
    /// (needs an allowance). `commitment` is `keccak256(abi.encode(kind, evidence, salt))`.
    /// Emits {ChallengeCommitted}.
    function commit(uint256 modelId, bytes32 commitment) external returns (uint256 id) {
        ModelRegistry.ResultCommitment memory c = registry.resultCommitment(modelId);
        // Checks
        if (c.status != ModelRegistry.ModelStatus.Pending) revert ChallengeNotPending(modelId);
        uint256 commitEnd = uint256(c.registeredAt) + commitPeriod;
        if (block.timestamp >= commitEnd) revert ChallengeCommitsClosed(modelId, commitEnd);
        // Effects
        id = ++_count;
        Challenge storage ch = _challenges[id];
        ch.modelId = modelId;
        ch.challenger = msg.sender;
        ch.status = Status.Committed;
        ch.committedBlock = uint64(block.number);
        ch.commitment = commitment;
        emit ChallengeCommitted(id, modelId, msg.sender, challengeBond);
        // Interactions
        token.safeTransferFrom(msg.sender, address(this), challengeBond);
    }

    /// @notice Reveals challenge `id` (its challenger only, at a later block than the commit,
    /// before the reveals close) and decides it, unless the node must answer. Emits
    /// {ChallengeRevealed}, and {ChallengeResolved} when decided.
    function reveal(uint256 id, Kind kind, bytes calldata evidence, bytes32 salt) external {
        Challenge storage ch = _challenge(id);
        // Checks
        if (ch.status != Status.Committed) revert ChallengeWrongStatus(id, ch.status);
        if (ch.challenger != msg.sender) revert ChallengeNotChallenger(id, msg.sender);
        if (block.number <= ch.committedBlock) revert ChallengeRevealTooEarly(id, ch.committedBlock);
        if (keccak256(abi.encode(kind, evidence, salt)) != ch.commitment) revert ChallengeWrongCommitment(id);
        ModelRegistry.ResultCommitment memory c = registry.resultCommitment(ch.modelId);
        uint256 revealEnd = uint256(c.registeredAt) + commitPeriod + revealPeriod;
        if (block.timestamp >= revealEnd) revert ChallengeRevealsClosed(ch.modelId, revealEnd);
        ch.kind = kind;
        if (c.status != ModelRegistry.ModelStatus.Pending) {
            emit ChallengeRevealed(id, ch.modelId, kind, 0);
            _resolve(id, ch, Status.Moot, msg.sender);
            return;
        }
        if (kind == Kind.Recompute) {
            address court_ = court;
            if (court_ == address(0)) revert ChallengeInvalidParameter("court");
            // Effects: open until the court decides; every phase of a case has a deadline.
            ch.status = Status.Referred;
            _open[ch.modelId] += 1;
            emit ChallengeRevealed(id, ch.modelId, kind, 0);
            // Interactions (trusted protocol contract): the court escrows the bond from here on.
            token.safeTransfer(court_, challengeBond);
            VerifierCourt(court_).open(id, ch.modelId, msg.sender, challengeBond, evidence);
            return;
        }
        if (kind == Kind.RewardLeaf) {
            RewardClaim memory r = abi.decode(evidence, (RewardClaim));
            bytes32 leaf = keccak256(bytes.concat(keccak256(abi.encode(c.jobId, r.index, r.account, r.amount))));
            if (!MerkleProof.verify(r.proof, c.attributionRoot, leaf)) {
                emit ChallengeRevealed(id, ch.modelId, kind, 0);
                _resolve(id, ch, Status.Rejected, c.node);
                return;
            }
            // Effects: the node has answerPeriod from now; the window's end bounds every deadline.
            ch.status = Status.Answerable;
            ch.answerDeadline = uint64(block.timestamp) + answerPeriod;
            ch.account = r.account;
            ch.amount = r.amount;
            _open[ch.modelId] += 1;
            emit ChallengeRevealed(id, ch.modelId, kind, ch.answerDeadline);
            return;
        }
        emit ChallengeRevealed(id, ch.modelId, kind, 0);
        bool fault = kind == Kind.DataNotPermitted ? _notPermitted(evidence, c) : _provesFault(kind, evidence, c);
        if (fault) {
            _uphold(id, ch);
        } else {
            _resolve(id, ch, Status.Rejected, c.node);
        }
    }

    /// @notice Decides a RewardLeaf challenge the node did not answer in time: upheld, the result
    /// voided (or moot if another challenge voided it first). Anyone may call. Emits {ChallengeResolved}.
    function settle(uint256 id) external {
        Challenge storage ch = _challenge(id);
        if (ch.status != Status.Answerable) revert ChallengeWrongStatus(id, ch.status);
        if (block.timestamp <= ch.answerDeadline) revert ChallengeAnswerOpen(id, ch.answerDeadline);
        _open[ch.modelId] -= 1;
        if (registry.resultCommitment(ch.modelId).status == ModelRegistry.ModelStatus.Pending) {
            _uphold(id, ch);
        } else {
            _resolve(id, ch, Status.Moot, ch.challenger);
        }
    }

    /// @notice Ends a commit that was never revealed, once reveals have closed: its bond goes to
    /// the node (or back to the challenger if the result was voided anyway). Anyone may call.
    /// Emits {ChallengeResolved}.
    function forfeit(uint256 id) external {
        Challenge storage ch = _challenge(id);
        if (ch.status != Status.Committed) revert ChallengeWrongStatus(id, ch.status);
        ModelRegistry.ResultCommitment memory c = registry.resultCommitment(ch.modelId);
        uint256 revealEnd = uint256(c.registeredAt) + commitPeriod + revealPeriod;
        if (block.timestamp < revealEnd) revert ChallengeRevealsOpen(ch.modelId, revealEnd);
        if (c.status == ModelRegistry.ModelStatus.Voided) {
            _resolve(id, ch, Status.Moot, ch.challenger);
        } else {
            _resolve(id, ch, Status.Forfeited, c.node);
        }
    }

    // ----------------------------------------------------------------------- Node

    /// @notice The node's answer to a RewardLeaf challenge: `abi.encode(bool byCount, Run[] runs)`,
    /// the account's whole contributions (ascending, disjoint) whose weights give the leaf's
    /// amount; no runs answers that it is the dust leaf. Reverts with the reason when the answer
    /// does not justify the leaf (the node may answer again until the deadline).
    /// Emits {ChallengeResolved}.
    function answer(uint256 id, bytes calldata evidence) external {
        Challenge storage ch = _challenge(id);
        if (ch.status != Status.Answerable) revert ChallengeWrongStatus(id, ch.status);
        if (block.timestamp > ch.answerDeadline) revert ChallengeAnswerClosed(id, ch.answerDeadline);
        ModelRegistry.ResultCommitment memory c = registry.resultCommitment(ch.modelId);
        if (msg.sender != c.node) revert ChallengeNotNode(id, msg.sender);
        if (c.status != ModelRegistry.ModelStatus.Pending) revert ChallengeNotPending(ch.modelId);
        (bool byCount, Run[] memory runs) = abi.decode(evidence, (bool, Run[]));
        _checkAnswer(id, ch, c, byCount, runs);
        _open[ch.modelId] -= 1;
        _resolve(id, ch, Status.Rejected, c.node);
    }

    // ---------------------------------------------------------------------- Court

    /// @notice The court's verdict on Recompute challenge `id` (the court only; it has paid out
    /// the bond): upheld voids the result (moot if another challenge voided it first).
    /// Emits {ChallengeResolved}.
    function decide(uint256 id, VerifierCourt.Verdict verdict) external {
        if (msg.sender != court) revert ChallengeNotCourt(msg.sender); // unset: no caller matches
        Challenge storage ch = _challenge(id);
        if (ch.status != Status.Referred) revert ChallengeWrongStatus(id, ch.status);
        _open[ch.modelId] -= 1;
        if (verdict == VerifierCourt.Verdict.Rejected) {
            ch.status = Status.Rejected;
            emit ChallengeResolved(id, ch.modelId, Status.Rejected, registry.resultCommitment(ch.modelId).node);
            return;
        }
        bool pending = registry.resultCommitment(ch.modelId).status == ModelRegistry.ModelStatus.Pending;
        Status status = verdict == VerifierCourt.Verdict.Lapsed ? Status.Lapsed : (pending ? Status.Upheld : Status.Moot);
        ch.status = status;
        emit ChallengeResolved(id, ch.modelId, status, ch.challenger);
        if (status == Status.Upheld) registry.voidResult(ch.modelId, ch.challenger);
    }

    // ---------------------------------------------------------------------- Views

    /// @notice Challenge `id`. Reverts for an unknown id.
    function getChallenge(uint256 id) external view returns (Challenge memory) {
        return _challenge(id);
    }

    /// @notice Number of challenges committed; ids run from 1 to this.
    function challengeCount() external view returns (uint256) {
        return _count;
    }

    /// @notice The whole window's length (commit + reveal + answer periods) and how many of
    /// `modelId`'s challenges wait for an answer or a {settle}: the registry finalizes a result
    /// only after the window and with none open.
    function windowOf(uint256 modelId) external view returns (uint256 period, uint256 open) {
        return (uint256(commitPeriod) + revealPeriod + answerPeriod, _open[modelId]);
    }

    /// @notice The leaf hash of a scores-tree leaf (OpenZeppelin StandardMerkleTree encoding).
    function scoreLeafHash(ScoreLeaf memory l) public pure returns (bytes32) {
        return keccak256(
            bytes.concat(
                keccak256(abi.encode(l.index, l.contributionId, l.contributor, l.score, l.runningTotal, l.gradientsHash))
            )
        );
    }

    // ------------------------------------------------------------------- Internal

    function _provesFault(Kind kind, bytes calldata evidence, ModelRegistry.ResultCommitment memory c)
        private
        pure
        returns (bool)
    {
        bytes32 root = c.scoresRoot;
        if (kind == Kind.RunningTotal) {
            (bool hasPrev, ProvenScore memory prev, ProvenScore memory s) =
                abi.decode(evidence, (bool, ProvenScore, ProvenScore));
            if (!_proven(s, root)) return false;
            if (!hasPrev) return s.leaf.index == 0 && s.leaf.runningTotal != s.leaf.score;
            if (!_proven(prev, root) || prev.leaf.index + 1 != s.leaf.index) return false;
            return !_sumIs(prev.leaf.runningTotal, s.leaf.score, s.leaf.runningTotal);
        }
        if (kind == Kind.IndexOutOfRange) {
            ProvenScore memory s = abi.decode(evidence, (ProvenScore));
            return _proven(s, root) && s.leaf.index >= c.exampleCount;
        }
        if (kind == Kind.DuplicateIndex) {
            (ProvenScore memory a, ProvenScore memory b) = abi.decode(evidence, (ProvenScore, ProvenScore));
            return a.leaf.index == b.leaf.index && scoreLeafHash(a.leaf) != scoreLeafHash(b.leaf)
                && _proven(a, root) && _proven(b, root);
        }
        if (kind == Kind.BrokenContribution) {
            (ProvenScore memory a, ProvenScore memory mid, ProvenScore memory b) =
                abi.decode(evidence, (ProvenScore, ProvenScore, ProvenScore));
            if (a.leaf.contributionId != b.leaf.contributionId || !_proven(a, root) || !_proven(b, root)) return false;
            if (a.leaf.contributor != b.leaf.contributor) return true;
            return a.leaf.index < mid.leaf.index && mid.leaf.index < b.leaf.index
                && mid.leaf.contributionId != a.leaf.contributionId && _proven(mid, root);
        }
        if (kind == Kind.DataMismatch) {
            (ProvenScore memory s, ProvenData memory d) = abi.decode(evidence, (ProvenScore, ProvenData));
            DataLeaf memory l = d.leaf;
            bytes32 leaf =
                keccak256(bytes.concat(keccak256(abi.encode(l.index, l.contributionId, l.contributor, l.exampleHash))));
            if (!MerkleProof.verify(d.proof, c.dataRoot, leaf)) return false;
            if (l.index >= c.exampleCount) return true;
            return s.leaf.index == l.index && _proven(s, root)
                && (s.leaf.contributionId != l.contributionId || s.leaf.contributor != l.contributor);
        }
        return false;
    }

    /// @dev Whether the proven data leaf in `evidence` is an example the node had no right to train
    /// on: its contribution was not approved, for that contributor, in one of the job's Datanets at
    /// the claim block. Decided from the registries' current records: a decision is final (only a
    /// pending contribution is decided), and `decidedAt` dates the approval against the claim.
    function _notPermitted(bytes calldata evidence, ModelRegistry.ResultCommitment memory c) private view returns (bool) {
        ProvenData memory d = abi.decode(evidence, (ProvenData));
        DataLeaf memory l = d.leaf;
        bytes32 leaf =
            keccak256(bytes.concat(keccak256(abi.encode(l.index, l.contributionId, l.contributor, l.exampleHash))));
        if (!MerkleProof.verify(d.proof, c.dataRoot, leaf)) return false;
        DatanetRegistry datanets = registry.datanets();
        if (l.contributionId == 0 || l.contributionId > datanets.contributionCount()) return true; // no such contribution
        DatanetRegistry.Contribution memory k = datanets.getContribution(l.contributionId);
        if (k.contributor != l.contributor) return true;
        ModelRegistry.Job memory j = registry.getJob(c.jobId);
        bool inJob = false;
        for (uint256 i = 0; i < j.datanetIds.length; ++i) {
            if (j.datanetIds[i] == k.datanetId) inJob = true;
        }
        if (!inJob) return true;
        if (k.status == DatanetRegistry.Status.Pending || k.status == DatanetRegistry.Status.Rejected) return true;
        // Approved (or withdrawn since): permitted only if approved by the end of the claim block.
        // A contribution withdrawn while pending was never approved (decidedAt 0).
        return k.decidedAt == 0 || k.decidedAt > j.claimTime;
    }

    function _checkAnswer(
        uint256 id,
        Challenge storage ch,
        ModelRegistry.ResultCommitment memory c,
        bool byCount,
        Run[] memory runs
    ) private view {
        if (runs.length == 0) {
            // The dust leaf: the rounding remainder, less than one unit per paid contributor.
            if (ch.account != c.dustRecipient) revert ChallengeBadAnswer(id, "not the dust recipient");
            if (ch.amount >= c.exampleCount) revert ChallengeBadAnswer(id, "dust too large");
            return;
        }
        if (byCount && c.totalWeight != c.exampleCount) revert ChallengeBadAnswer(id, "W is not the example count");
        uint256 w = 0;
        uint256 nextFree = 0; // runs ascend and are disjoint: each starts at or after this index
        for (uint256 i = 0; i < runs.length; ++i) {
            w += _runWeight(id, runs[i], ch.account, c, byCount, nextFree);
            nextFree = runs[i].last.leaf.index + 1;
        }
        if (ch.amount != (c.contributorsTotal * w) / c.totalWeight) revert ChallengeBadAnswer(id, "amount");
    }

    /// @dev The weight one run contributes, after checking it is one whole contribution of `account`.
    function _runWeight(
        uint256 id,
        Run memory run,
        address account,
        ModelRegistry.ResultCommitment memory c,
        bool byCount,
        uint256 nextFree
    ) private pure returns (uint256) {
        ScoreLeaf memory f = run.first.leaf;
        ScoreLeaf memory l = run.last.leaf;
        if (f.contributor != account || l.contributor != account) revert ChallengeBadAnswer(id, "contributor");
        if (f.contributionId != l.contributionId) revert ChallengeBadAnswer(id, "contribution");
        if (f.index < nextFree || l.index < f.index) revert ChallengeBadAnswer(id, "order");
        if (!_proven(run.first, c.scoresRoot) || !_proven(run.last, c.scoresRoot)) revert ChallengeBadAnswer(id, "proof");
        int256 base = 0;
        if (f.index != 0) {
            ScoreLeaf memory b = run.before.leaf;
            if (b.index + 1 != f.index || b.contributionId == f.contributionId || !_proven(run.before, c.scoresRoot)) {
                revert ChallengeBadAnswer(id, "start");
            }
            base = b.runningTotal;
        }
        if (l.index + 1 != c.exampleCount) {
            ScoreLeaf memory n = run.next.leaf;
            if (n.index != l.index + 1 || n.contributionId == l.contributionId || !_proven(run.next, c.scoresRoot)) {
                revert ChallengeBadAnswer(id, "end");
            }
        }
        int256 sum = l.runningTotal - base;
        if (byCount) {
            if (sum > 0) revert ChallengeBadAnswer(id, "positive contribution under the count fallback");
            return l.index - f.index + 1;
        }
        // forge-lint: the cast is safe, sum > 0.
        return sum > 0 ? uint256(sum) : 0;
    }

    function _uphold(uint256 id, Challenge storage ch) private {
        _resolve(id, ch, Status.Upheld, ch.challenger);
        registry.voidResult(ch.modelId, ch.challenger);
    }

    function _resolve(uint256 id, Challenge storage ch, Status status, address bondTo) private {
        ch.status = status;
        emit ChallengeResolved(id, ch.modelId, status, bondTo);
        token.safeTransfer(bondTo, challengeBond);
    }

    function _proven(ProvenScore memory s, bytes32 root) private pure returns (bool) {
        return MerkleProof.verify(s.proof, root, scoreLeafHash(s.leaf));
    }

    /// @dev Whether `a + b == total` in exact integers (an overflowing sum is never a valid total).
    function _sumIs(int256 a, int256 b, int256 total) private pure returns (bool) {
        unchecked {
            int256 s = a + b;
            bool overflow = (b > 0 && s < a) || (b < 0 && s > a);
            return !overflow && s == total;
        }
    }

    function _challenge(uint256 id) private view returns (Challenge storage ch) {
        ch = _challenges[id];
        if (ch.status == Status.None) revert ChallengeUnknown(id);
    }

    function _checkPeriod(uint64 period, string memory name_) private pure {
        if (period < MIN_PERIOD || period > MAX_PERIOD) revert ChallengeInvalidParameter(name_);
    }
}
