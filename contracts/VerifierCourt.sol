// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {DatanetRegistry} from "./DatanetRegistry.sol";
import {IVerifierFees, ModelRegistry} from "./ModelRegistry.sol";

/// @notice What the court tells the challenge contract when a recomputation case ends.
interface IChallengeVerdicts {
    function decide(uint256 challengeId, VerifierCourt.Verdict verdict) external;
}

/// @title VerifierCourt
/// @notice Recomputation disputes: whether a result's committed scores reproduce is settled by a
/// committee of staked verifiers, each of whom reruns `datanet verify` off-chain and votes.
///
/// - Verifiers stake OPEN here ({join}); the set is capped (`MAX_VERIFIERS`) so a draw stays
///   bounded, and a draw weighs each verifier by its stake, so splitting one stake into many
///   identities gains no seats. Every finalized job pays `ModelRegistry.VERIFIER_FEE_BPS` of its pool into the
///   court ({depositFee}), shared by stake: verifiers are paid for standing by, not only in disputes.
/// - A challenge of kind Recompute (ResultChallenges) escrows its bond here and opens a case. The
///   committee is drawn from the hash of a block *after* the case opened ({draw}), from verifiers
///   other than the job's node and the challenger, and, when the job trains on a private or
///   restricted Datanet, only from the nodes every such Datanet trusts (they hold its key grants).
///   If that block is more than 256 blocks old when drawn, a newer block is named instead.
/// - Members commit `keccak256(abi.encode(caseId, round, member, vote, salt))`, then reveal: a
///   visible vote could be copied. More than half of the committee must reveal; a majority of Fault
///   upholds the challenge, otherwise (ties too: a result within the float tolerance is never
///   slashed) it is rejected. Without a quorum the committee is redrawn once, then the case lapses
///   and the challenger's bond goes back. Members who do not reveal lose `NO_VOTE_SLASH_BPS` of
///   their stake (burned); those who voted with the majority share `COMMITTEE_BPS` of the bond.
/// - The losing side (the node, or the challenger) may appeal once within `appealPeriod`, paying
///   `appealBond`, to a committee of `2 * committeeSize + 1`; its verdict is final.
/// Every phase has a deadline counted from its start, so a case ends whoever stops acting.
contract VerifierCourt is IVerifierFees {
    using SafeERC20 for IERC20;

    enum Vote {
        None,
        Reproduces, // the committed values reproduce within the documented tolerance
        Fault // they do not, or an artifact could not be fetched during the window
    }

    enum Verdict {
        None,
        Upheld, // the result is voided
        Rejected, // the result stands; the bond pays the node and the committee
        Lapsed // no quorum twice: the bond goes back to the challenger
    }

    enum Phase {
        None,
        Voting,
        Appealable,
        Closed
    }

    struct Verifier {
        uint256 active; // staked; weighs in draws when at least minVerifierStake
        uint256 leaving; // on its way out, withdrawable at leaveAt
        uint64 leaveAt;
        uint32 duties; // committees it sits on that are not yet tallied
    }

    struct Case {
        uint256 modelId;
        uint256 jobId;
        address node;
        address challenger;
        Phase phase;
        uint8 round; // 0: first committee, 1: its redraw, 2: appeal, 3: the appeal's redraw
        Verdict verdict; // the first committee's verdict, while appealable; then the final one
        address appellant;
        uint64 appealDeadline;
        uint256 bond; // the challenge bond still held here
        uint256 appealBond; // the appeal bond still held here
    }

    struct Round {
        uint64 seedBlock; // its hash draws the committee
        uint64 commitDeadline;
        uint64 revealDeadline;
        bool drawn;
        uint16 reproduces;
        uint16 faults;
        address[] members;
    }

    struct Ballot {
        bool drawn;
        bytes32 commitment;
        Vote vote;
    }

    uint256 public constant MAX_VERIFIERS = 64;
    uint8 public constant MAX_COMMITTEE = 15;
    /// @notice Share of the bond that opened a round paid to the members who voted with its majority.
    uint16 public constant COMMITTEE_BPS = 5_000;
    /// @notice Share of a drawn member's stake burned when it does not reveal a vote.
    uint16 public constant NO_VOTE_SLASH_BPS = 1_000;
    uint64 public constant MIN_PERIOD = 2 seconds;
    uint64 public constant MAX_PERIOD = 30 days;
    address public constant BURN_ADDRESS = 0x000000000000000000000000000000000000dEaD;
    uint256 private constant PRECISION = 1e18;

    IERC20 public immutable token;
    ModelRegistry public immutable registry;
    DatanetRegistry public immutable datanets;
    /// @notice The ResultChallenges contract: it alone opens cases.
    address public immutable challenges;
    uint256 public immutable minVerifierStake;
    uint8 public immutable committeeSize;
    /// @notice OPEN the losing side escrows to appeal.
    uint256 public immutable appealBond;
    uint64 public immutable votePeriod;
    uint64 public immutable revealVotePeriod;
    uint64 public immutable appealPeriod;
    /// @notice Seconds between {requestLeave} and {withdraw}.
    uint64 public immutable leaveDelay;

    address[] private _set;
    mapping(address verifier => uint256) private _position; // 1-based index in _set; 0 when absent
    mapping(address verifier => Verifier) private _verifiers;
    uint256 public totalActive;
    /// @notice Fees paid in while no verifier was staked: shared with the next deposit.
    uint256 public undistributed;
    uint256 private _accPerStake; // fees per staked unit, scaled by PRECISION
    mapping(address verifier => uint256) private _accPaid;
    mapping(address account => uint256) private _owed;

    mapping(uint256 caseId => Case) private _cases;
    mapping(uint256 caseId => mapping(uint8 round => Round)) private _rounds;
    mapping(uint256 caseId => mapping(uint8 round => mapping(address member => Ballot))) private _ballots;

    error CourtInvalidParameter(string parameter);
    error CourtZeroAmount();
    error CourtFull(uint256 maxVerifiers);
    error CourtStakeBelowMinimum(uint256 active, uint256 minimum);
    error CourtInsufficientStake(uint256 active, uint256 requested);
    error CourtOnDuty(address verifier, uint32 duties);
    error CourtNothingToWithdraw(address verifier);
    error CourtStillLeaving(address verifier, uint64 leaveAt);
    error CourtNotChallenges(address caller);
    error CourtCaseExists(uint256 caseId);
    error CourtUnknownCase(uint256 caseId);
    error CourtWrongPhase(uint256 caseId, Phase phase);
    error CourtAlreadyDrawn(uint256 caseId, uint8 round);
    error CourtSeedNotMined(uint256 caseId, uint64 seedBlock);
    error CourtCommitsClosed(uint256 caseId, uint64 commitDeadline);
    error CourtRevealsNotOpen(uint256 caseId, uint64 commitDeadline);
    error CourtRevealsClosed(uint256 caseId, uint64 revealDeadline);
    error CourtRevealsOpen(uint256 caseId, uint64 revealDeadline);
    error CourtNotMember(uint256 caseId, address account);
    error CourtAlreadyCommitted(uint256 caseId, address member);
    error CourtWrongVote(uint256 caseId, address member);
    error CourtAppealClosed(uint256 caseId, uint64 appealDeadline);
    error CourtAppealOpen(uint256 caseId, uint64 appealDeadline);
    error CourtNotLosingSide(uint256 caseId, address account);

    event VerifierJoined(address indexed verifier, uint256 amount, uint256 active);
    event VerifierLeaving(address indexed verifier, uint256 amount, uint64 leaveAt);
    event VerifierWithdrawn(address indexed verifier, uint256 amount);
    event VerifierSlashed(address indexed verifier, uint256 indexed caseId, uint256 amount);
    event FeeDeposited(uint256 indexed jobId, uint256 amount, uint256 totalActive);
    event FeesClaimed(address indexed account, uint256 amount);
    /// @notice A recomputation case opened for challenge `caseId`; `claim` is the challenger's
    /// evidence (abi-encoded example index and reason), for the verifiers.
    event CaseOpened(
        uint256 indexed caseId, uint256 indexed modelId, address indexed node, address challenger, bytes claim
    );
    /// @notice A round starts: its committee is drawn from `seedBlock`'s hash.
    event RoundStarted(uint256 indexed caseId, uint8 round, uint64 seedBlock, uint64 commitDeadline, uint64 revealDeadline);
    /// @notice The seed block was more than 256 blocks old when drawn: `seedBlock` replaces it.
    event SeedRenewed(uint256 indexed caseId, uint8 round, uint64 seedBlock);
    event MemberDrawn(uint256 indexed caseId, uint8 round, address indexed member);
    event VoteCommitted(uint256 indexed caseId, uint8 round, address indexed member);
    event VoteRevealed(uint256 indexed caseId, uint8 round, address indexed member, Vote vote);
    /// @notice A round was tallied; `verdict` is None when it had no quorum.
    event RoundTallied(uint256 indexed caseId, uint8 round, uint16 reproduces, uint16 faults, Verdict verdict);
    event Appealed(uint256 indexed caseId, address indexed appellant, uint256 bond);
    event CaseClosed(uint256 indexed caseId, Verdict verdict);

    /// @param token_ The OPEN token.
    /// @param registry_ The ModelRegistry (jobs' nodes and Datanets).
    /// @param datanets_ The DatanetRegistry (which nodes a private Datanet trusts).
    /// @param challenges_ The ResultChallenges contract that refers recomputation challenges here.
    /// @param minVerifierStake_ Stake a verifier needs to be drawn; non-zero.
    /// @param committeeSize_ Members of a first committee: odd, 1..7 (an appeal draws 2n+1).
    /// @param appealBond_ OPEN an appeal escrows; non-zero.
    /// @param periods `[votePeriod, revealVotePeriod, appealPeriod, leaveDelay]` in seconds.
    constructor(
        IERC20 token_,
        ModelRegistry registry_,
        DatanetRegistry datanets_,
        address challenges_,
        uint256 minVerifierStake_,
        uint8 committeeSize_,
        uint256 appealBond_,
        uint64[4] memory periods
    ) {
        if (minVerifierStake_ == 0) revert CourtInvalidParameter("minVerifierStake");
        if (committeeSize_ == 0 || committeeSize_ % 2 == 0 || 2 * uint256(committeeSize_) + 1 > MAX_COMMITTEE) {
            revert CourtInvalidParameter("committeeSize");
        }
        if (appealBond_ == 0) revert CourtInvalidParameter("appealBond");
        if (challenges_ == address(0)) revert CourtInvalidParameter("challenges");
        for (uint256 i = 0; i < 3; ++i) {
            if (periods[i] < MIN_PERIOD || periods[i] > MAX_PERIOD) revert CourtInvalidParameter("period");
        }
        // A verifier cannot leave while on a committee, and a case's phases are bounded by these.
        if (periods[3] > 365 days) revert CourtInvalidParameter("leaveDelay");
        token = token_;
        registry = registry_;
        datanets = datanets_;
        challenges = challenges_;
        minVerifierStake = minVerifierStake_;
        committeeSize = committeeSize_;
        appealBond = appealBond_;
        votePeriod = periods[0];
        revealVotePeriod = periods[1];
        appealPeriod = periods[2];
        leaveDelay = periods[3];
    }

    // ------------------------------------------------------------------ Verifiers

    /// @notice Stakes `amount` OPEN as a verifier (needs an allowance). Emits {VerifierJoined}.
    function join(uint256 amount) external {
        if (amount == 0) revert CourtZeroAmount();
        Verifier storage v = _verifiers[msg.sender];
        uint256 active = v.active + amount;
        if (active < minVerifierStake) revert CourtStakeBelowMinimum(active, minVerifierStake);
        _accrue(msg.sender);
        if (_position[msg.sender] == 0) {
            if (_set.length >= MAX_VERIFIERS) revert CourtFull(MAX_VERIFIERS);
            _set.push(msg.sender);
            _position[msg.sender] = _set.length;
        }
        v.active = active;
        totalActive += amount;
        emit VerifierJoined(msg.sender, amount, active);
        token.safeTransferFrom(msg.sender, address(this), amount);
    }

    /// @notice Starts withdrawing `amount` of the caller's stake; not while it sits on a committee
    /// (it could dodge the no-vote penalty). What stays must be zero or at least the minimum.
    /// Emits {VerifierLeaving}.
    function requestLeave(uint256 amount) external {
        if (amount == 0) revert CourtZeroAmount();
        Verifier storage v = _verifiers[msg.sender];
        if (v.duties != 0) revert CourtOnDuty(msg.sender, v.duties);
        if (amount > v.active) revert CourtInsufficientStake(v.active, amount);
        uint256 rest = v.active - amount;
        if (rest != 0 && rest < minVerifierStake) revert CourtStakeBelowMinimum(rest, minVerifierStake);
        _accrue(msg.sender);
        v.active = rest;
        totalActive -= amount;
        v.leaving += amount;
        v.leaveAt = uint64(block.timestamp) + leaveDelay;
        if (rest == 0) _removeFromSet(msg.sender);
        emit VerifierLeaving(msg.sender, amount, v.leaveAt);
    }

    /// @notice Withdraws what finished leaving. Emits {VerifierWithdrawn}.
    function withdraw() external {
        Verifier storage v = _verifiers[msg.sender];
        uint256 amount = v.leaving;
        if (amount == 0) revert CourtNothingToWithdraw(msg.sender);
        if (block.timestamp < v.leaveAt) revert CourtStillLeaving(msg.sender, v.leaveAt);
        v.leaving = 0;
        emit VerifierWithdrawn(msg.sender, amount);
        token.safeTransfer(msg.sender, amount);
    }

    /// @notice Adds `amount` OPEN (pulled from the caller) to the verifiers' fees, shared by stake.
    /// The ModelRegistry calls it when a job is finalized. Emits {FeeDeposited}.
    function depositFee(uint256 jobId, uint256 amount) external {
        uint256 total = totalActive;
        if (total == 0) {
            undistributed += amount;
        } else {
            uint256 pending = amount + undistributed;
            uint256 perStake = (pending * PRECISION) / total;
            _accPerStake += perStake;
            // What the rounding keeps back waits for the next deposit instead of being stranded:
            // dividing first is the point (it is what the stakers' accruals add up to, at most).
            // slither-disable-next-line divide-before-multiply
            undistributed = pending - (perStake * total) / PRECISION;
        }
        emit FeeDeposited(jobId, amount, total);
        token.safeTransferFrom(msg.sender, address(this), amount);
    }

    /// @notice Pays the caller its fees: its share of job fees and its committee fees. Emits {FeesClaimed}.
    function claimFees() external {
        _accrue(msg.sender);
        uint256 amount = _owed[msg.sender];
        // An internal ledger no one else can move: the strict check only refuses an empty claim.
        // slither-disable-next-line incorrect-equality
        if (amount == 0) revert CourtZeroAmount();
        _owed[msg.sender] = 0;
        emit FeesClaimed(msg.sender, amount);
        token.safeTransfer(msg.sender, amount);
    }

    // ---------------------------------------------------------------------- Cases

    /// @notice Opens the case of recomputation challenge `caseId`, whose `bond` the challenge
    /// contract has just transferred here. The first committee is drawn from the next block's hash.
    function open(uint256 caseId, uint256 modelId, address challenger, uint256 bond, bytes calldata claim) external {
        if (msg.sender != challenges) revert CourtNotChallenges(msg.sender);
        Case storage c = _cases[caseId];
        if (c.phase != Phase.None) revert CourtCaseExists(caseId);
        ModelRegistry.Model memory m = registry.getModel(modelId);
        c.modelId = modelId;
        c.jobId = m.jobId;
        c.node = m.node;
        c.challenger = challenger;
        c.bond = bond;
        emit CaseOpened(caseId, modelId, m.node, challenger, claim);
        _startRound(caseId, c, 0);
    }

    /// @notice Draws the current round's committee once its seed block is mined (anyone may call;
    /// the challenger has reason to). Emits {MemberDrawn} for each member, or {SeedRenewed}.
    function draw(uint256 caseId) external {
        Case storage c = _case(caseId);
        if (c.phase != Phase.Voting) revert CourtWrongPhase(caseId, c.phase);
        uint8 r = c.round;
        Round storage round = _rounds[caseId][r];
        if (round.drawn) revert CourtAlreadyDrawn(caseId, r);
        if (block.timestamp > round.commitDeadline) revert CourtCommitsClosed(caseId, round.commitDeadline);
        if (block.number <= round.seedBlock) revert CourtSeedNotMined(caseId, round.seedBlock);
        bytes32 seed = blockhash(round.seedBlock);
        if (seed == bytes32(0)) {
            // Older than 256 blocks: name this block, whose hash no one knows yet.
            round.seedBlock = uint64(block.number);
            emit SeedRenewed(caseId, r, round.seedBlock);
            return;
        }
        round.drawn = true;
        address[] memory picked = _sortition(c, seed, r >= 2 ? 2 * uint256(committeeSize) + 1 : committeeSize);
        for (uint256 i = 0; i < picked.length; ++i) {
            address m = picked[i];
            round.members.push(m);
            _ballots[caseId][r][m].drawn = true;
            _verifiers[m].duties += 1;
            emit MemberDrawn(caseId, r, m);
        }
    }

    /// @notice A drawn member's sealed vote: `keccak256(abi.encode(caseId, round, member, vote, salt))`.
    /// Emits {VoteCommitted}.
    function commitVote(uint256 caseId, bytes32 commitment) external {
        Case storage c = _case(caseId);
        if (c.phase != Phase.Voting) revert CourtWrongPhase(caseId, c.phase);
        Round storage round = _rounds[caseId][c.round];
        if (block.timestamp > round.commitDeadline) revert CourtCommitsClosed(caseId, round.commitDeadline);
        Ballot storage b = _ballots[caseId][c.round][msg.sender];
        if (!b.drawn) revert CourtNotMember(caseId, msg.sender);
        if (b.commitment != bytes32(0)) revert CourtAlreadyCommitted(caseId, msg.sender);
        b.commitment = commitment;
        emit VoteCommitted(caseId, c.round, msg.sender);
    }

    /// @notice Opens a committed vote, after the commits close. Emits {VoteRevealed}.
    function revealVote(uint256 caseId, Vote vote, bytes32 salt) external {
        Case storage c = _case(caseId);
        if (c.phase != Phase.Voting) revert CourtWrongPhase(caseId, c.phase);
        uint8 r = c.round;
        Round storage round = _rounds[caseId][r];
        if (block.timestamp <= round.commitDeadline) revert CourtRevealsNotOpen(caseId, round.commitDeadline);
        if (block.timestamp > round.revealDeadline) revert CourtRevealsClosed(caseId, round.revealDeadline);
        Ballot storage b = _ballots[caseId][r][msg.sender];
        if (!b.drawn || b.vote != Vote.None || vote == Vote.None) revert CourtWrongVote(caseId, msg.sender);
        if (keccak256(abi.encode(caseId, r, msg.sender, vote, salt)) != b.commitment) {
            revert CourtWrongVote(caseId, msg.sender);
        }
        b.vote = vote;
        if (vote == Vote.Fault) round.faults += 1;
        else round.reproduces += 1;
        emit VoteRevealed(caseId, r, msg.sender, vote);
    }

    /// @notice Counts the current round once its reveals have closed (anyone may call): burns the
    /// stake share of members who did not reveal, then decides, redraws or lets the case lapse.
    /// Emits {RoundTallied}, and {CaseClosed} when the case ends.
    function tally(uint256 caseId) external {
        Case storage c = _case(caseId);
        if (c.phase != Phase.Voting) revert CourtWrongPhase(caseId, c.phase);
        uint8 r = c.round;
        Round storage round = _rounds[caseId][r];
        if (block.timestamp <= round.revealDeadline) revert CourtRevealsOpen(caseId, round.revealDeadline);
        uint256 n = round.members.length;
        uint256 revealed = uint256(round.reproduces) + round.faults;
        uint256 burned = 0;
        for (uint256 i = 0; i < n; ++i) {
            address m = round.members[i];
            _verifiers[m].duties -= 1;
            if (_ballots[caseId][r][m].vote == Vote.None) burned += _slash(m, caseId);
        }
        bool appealRound = r >= 2;
        if (revealed * 2 <= n) {
            // No quorum (an empty committee included): redraw once, then give up.
            emit RoundTallied(caseId, r, round.reproduces, round.faults, Verdict.None);
            if (r % 2 == 0) {
                _startRound(caseId, c, r + 1);
            } else if (appealRound) {
                // The appeal came to nothing: the first verdict stands, the appeal bond goes back.
                uint256 refund = c.appealBond;
                c.appealBond = 0;
                _close(caseId, c, c.verdict, c.appellant, refund);
            } else {
                _close(caseId, c, Verdict.Lapsed, address(0), 0);
            }
        } else {
            Verdict verdict = round.faults > round.reproduces ? Verdict.Upheld : Verdict.Rejected;
            emit RoundTallied(caseId, r, round.reproduces, round.faults, verdict);
            _payMajority(caseId, r, round, verdict, appealRound);
            if (!appealRound) {
                c.phase = Phase.Appealable;
                c.verdict = verdict;
                c.appealDeadline = uint64(block.timestamp) + appealPeriod;
            } else {
                // The appeal's verdict is final; what is left of the appeal bond goes to whoever it
                // favours (back to the appellant when it won, to the other side when it lost).
                uint256 rest = c.appealBond;
                c.appealBond = 0;
                _close(caseId, c, verdict, verdict == Verdict.Upheld ? c.challenger : c.node, rest);
            }
        }
        // Interactions last: the silent members' stake share is burned.
        _burn(burned);
    }

    /// @notice The losing side (the node when upheld, the challenger when rejected) appeals once,
    /// escrowing `appealBond` (needs an allowance), to a committee of `2 * committeeSize + 1`.
    /// Emits {Appealed}.
    function appeal(uint256 caseId) external {
        Case storage c = _case(caseId);
        if (c.phase != Phase.Appealable) revert CourtWrongPhase(caseId, c.phase);
        if (block.timestamp > c.appealDeadline) revert CourtAppealClosed(caseId, c.appealDeadline);
        address loser = c.verdict == Verdict.Upheld ? c.node : c.challenger;
        if (msg.sender != loser) revert CourtNotLosingSide(caseId, msg.sender);
        c.appellant = msg.sender;
        c.appealBond = appealBond;
        emit Appealed(caseId, msg.sender, appealBond);
        _startRound(caseId, c, 2);
        token.safeTransferFrom(msg.sender, address(this), appealBond);
    }

    /// @notice Ends an appealable case whose appeal period passed without an appeal (anyone may
    /// call). Emits {CaseClosed}.
    function close(uint256 caseId) external {
        Case storage c = _case(caseId);
        if (c.phase != Phase.Appealable) revert CourtWrongPhase(caseId, c.phase);
        if (block.timestamp <= c.appealDeadline) revert CourtAppealOpen(caseId, c.appealDeadline);
        _close(caseId, c, c.verdict, address(0), 0);
    }

    // ----------------------------------------------------------------------- Views

    function getCase(uint256 caseId) external view returns (Case memory) {
        return _case(caseId);
    }

    function getRound(uint256 caseId, uint8 round) external view returns (Round memory) {
        return _rounds[caseId][round];
    }

    function ballotOf(uint256 caseId, uint8 round, address member) external view returns (Ballot memory) {
        return _ballots[caseId][round][member];
    }

    function verifierOf(address verifier) external view returns (Verifier memory) {
        return _verifiers[verifier];
    }

    function verifiers() external view returns (address[] memory) {
        return _set;
    }

    /// @notice Fees `account` may claim now.
    function feesOf(address account) external view returns (uint256) {
        return _owed[account] + (_verifiers[account].active * (_accPerStake - _accPaid[account])) / PRECISION;
    }

    // -------------------------------------------------------------------- Internal

    function _startRound(uint256 caseId, Case storage c, uint8 r) private {
        c.phase = Phase.Voting;
        c.round = r;
        Round storage round = _rounds[caseId][r];
        round.seedBlock = uint64(block.number);
        round.commitDeadline = uint64(block.timestamp) + votePeriod;
        round.revealDeadline = round.commitDeadline + revealVotePeriod;
        emit RoundStarted(caseId, r, round.seedBlock, round.commitDeadline, round.revealDeadline);
    }

    /// @dev Draws up to `size` distinct members, each pick weighted by active stake among the
    /// eligible verifiers not yet picked. Fewer eligible verifiers give a smaller committee.
    function _sortition(Case storage c, bytes32 seed, uint256 size) private view returns (address[] memory picked) {
        uint256 n = _set.length;
        uint256[] memory weights = new uint256[](n);
        uint256 total = 0;
        uint256[] memory datanetIds = registry.getModel(c.modelId).datanetIds;
        for (uint256 i = 0; i < n; ++i) {
            address v = _set[i];
            uint256 w = _verifiers[v].active;
            if (w < minVerifierStake || v == c.node || v == c.challenger || !_trusted(datanetIds, v)) continue;
            weights[i] = w;
            total += w;
        }
        picked = new address[](size);
        uint256 count = 0;
        for (; count < size && total != 0; ++count) {
            // The seed is the hash of a block mined after the case opened (see {draw}): unknown when
            // the challenge was filed, and the modulo bias is below total / 2**256. What a block
            // producer could still do (withhold a block to redraw) costs it the block reward and is
            // bounded by the appeal to a larger, freshly drawn committee.
            // slither-disable-next-line weak-prng
            uint256 x = uint256(keccak256(abi.encode(seed, count))) % total;
            uint256 i = 0;
            // The loop ends: x < total = the sum of weights, so some prefix sum exceeds x.
            while (x >= weights[i]) {
                x -= weights[i];
                ++i;
            }
            picked[count] = _set[i];
            total -= weights[i];
            weights[i] = 0;
        }
        // forge-lint: shrink the array to the members actually drawn.
        assembly ("memory-safe") {
            mstore(picked, count)
        }
    }

    /// @dev Whether `v` may see every Datanet of the job: any verifier for an open Datanet, only
    /// trusted nodes for a private or restricted one (the M-1 list, with its key grants).
    function _trusted(uint256[] memory datanetIds, address v) private view returns (bool) {
        for (uint256 i = 0; i < datanetIds.length; ++i) {
            if (!datanets.canClaim(datanetIds[i], v)) return false;
        }
        return true;
    }

    function _payMajority(uint256 caseId, uint8 r, Round storage round, Verdict verdict, bool appealRound) private {
        Vote majority = verdict == Verdict.Upheld ? Vote.Fault : Vote.Reproduces;
        uint256 winners = verdict == Verdict.Upheld ? round.faults : round.reproduces;
        Case storage c = _cases[caseId];
        uint256 pot;
        if (appealRound) {
            pot = (c.appealBond * COMMITTEE_BPS) / 10_000;
            c.appealBond -= pot;
        } else {
            pot = (c.bond * COMMITTEE_BPS) / 10_000;
            c.bond -= pot;
        }
        uint256 each = pot / winners; // winners > 0: a quorum's majority voted
        uint256 n = round.members.length;
        uint256 paid = 0;
        for (uint256 i = 0; i < n; ++i) {
            address m = round.members[i];
            if (_ballots[caseId][r][m].vote == majority) {
                _owed[m] += each;
                paid += each;
            }
        }
        // Rounding dust stays with the bond, so it is paid out with it.
        if (appealRound) c.appealBond += pot - paid;
        else c.bond += pot - paid;
    }

    /// @dev Ends the case: pays the bond's remainder (the challenger when upheld or lapsed, the
    /// node when rejected) and `extra` to `extraTo`, and tells the challenge contract.
    function _close(uint256 caseId, Case storage c, Verdict verdict, address extraTo, uint256 extra) private {
        // Effects
        c.phase = Phase.Closed;
        c.verdict = verdict;
        uint256 bond = c.bond;
        c.bond = 0;
        address bondTo = verdict == Verdict.Rejected ? c.node : c.challenger;
        emit CaseClosed(caseId, verdict);
        // Interactions: the challenge contract (trusted) voids the result when upheld.
        IChallengeVerdicts(challenges).decide(caseId, verdict);
        if (bond != 0) token.safeTransfer(bondTo, bond);
        if (extra != 0) token.safeTransfer(extraTo, extra);
    }

    function _slash(address m, uint256 caseId) private returns (uint256 cut) {
        Verifier storage v = _verifiers[m];
        _accrue(m);
        cut = (v.active * NO_VOTE_SLASH_BPS) / 10_000;
        v.active -= cut;
        totalActive -= cut;
        if (v.active == 0) _removeFromSet(m);
        emit VerifierSlashed(m, caseId, cut);
    }

    function _burn(uint256 amount) private {
        if (amount != 0) token.safeTransfer(BURN_ADDRESS, amount);
    }

    function _accrue(address v) private {
        uint256 acc = _accPerStake;
        uint256 paid = _accPaid[v];
        if (acc != paid) {
            _owed[v] += (_verifiers[v].active * (acc - paid)) / PRECISION;
            _accPaid[v] = acc;
        }
    }

    function _removeFromSet(address v) private {
        uint256 pos = _position[v];
        if (pos == 0) return;
        address last = _set[_set.length - 1];
        _set[pos - 1] = last;
        _position[last] = pos;
        _set.pop();
        _position[v] = 0;
    }

    function _case(uint256 caseId) private view returns (Case storage c) {
        c = _cases[caseId];
        if (c.phase == Phase.None) revert CourtUnknownCase(caseId);
    }
}
