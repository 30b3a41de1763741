// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {DatanetRegistry} from "./DatanetRegistry.sol";

/// @title KeyRegistry
/// @notice Public keys and key grants for private Datanets. Content on IPFS is readable by anyone
/// who knows its CID, so a private Datanet's files are encrypted (off-chain) to the Datanet's
/// X25519 key. This contract only publishes who may read what: each account's X25519 encryption
/// key, each private Datanet's current public key (with a version that grows on rotation, and the
/// CID of the document wrapping its private key to the owner and curators), and grants: the CID
/// of a document wrapping file keys to a node for one job (`jobId != 0`), or the Datanet key to
/// an account (`jobId == 0`, a standing grant). No secret is ever stored here.
contract KeyRegistry {
    /// @notice One version of a Datanet's key.
    struct DatanetKey {
        bytes32 publicKey; // X25519 public key contributors encrypt to
        string keyGrantsCID; // JSON on IPFS: the private key wrapped to the owner and curators
    }

    /// @notice The latest grant to one account for one job (or a standing grant, job 0).
    struct Grant {
        string grantCID; // JSON on IPFS: keys wrapped to the grantee's encryption key
        uint64 keyVersion; // the Datanet key version current when it was granted
    }

    DatanetRegistry public immutable datanets;

    mapping(address account => bytes32) private _encryptionKeys;
    mapping(uint256 datanetId => uint64) private _keyVersions;
    mapping(uint256 datanetId => mapping(uint64 keyVersion => DatanetKey)) private _datanetKeys;
    mapping(uint256 datanetId => mapping(address grantee => mapping(uint256 jobId => Grant))) private _grants;

    error KeyRegistryInvalidKey();
    error KeyRegistryEmptyCID();
    error KeyRegistryInvalidGrantee();
    error KeyRegistryUnknownDatanet(uint256 datanetId);
    error KeyRegistryNotPrivate(uint256 datanetId);
    error KeyRegistryNotOwner(uint256 datanetId, address account);
    error KeyRegistryNotGranter(uint256 datanetId, address account);
    error KeyRegistryNoDatanetKey(uint256 datanetId);

    /// @notice Emitted when `account` publishes its X25519 encryption public key.
    event EncryptionKeySet(address indexed account, bytes32 publicKey);
    /// @notice Emitted when a Datanet's owner publishes a key (a new version) or re-publishes the
    /// current key with a new key-grants document (same version).
    event DatanetKeySet(uint256 indexed datanetId, uint64 indexed keyVersion, bytes32 publicKey, string keyGrantsCID);
    /// @notice Emitted when the owner or a curator grants `grantee` access for job `jobId`
    /// (0: a standing grant of the Datanet key).
    event AccessGranted(
        uint256 indexed datanetId, address indexed grantee, uint256 indexed jobId, string grantCID, uint64 keyVersion
    );

    constructor(DatanetRegistry datanets_) {
        datanets = datanets_;
    }

    // ------------------------------------------------------------ account keys

    /// @notice Publishes (or replaces) the caller's X25519 encryption public key, to which
    /// others wrap keys for it. Emits {EncryptionKeySet}.
    function setEncryptionKey(bytes32 x25519PublicKey) external {
        if (x25519PublicKey == bytes32(0)) revert KeyRegistryInvalidKey();
        _encryptionKeys[msg.sender] = x25519PublicKey;
        emit EncryptionKeySet(msg.sender, x25519PublicKey);
    }

    /// @notice `account`'s X25519 encryption public key (zero if it never published one).
    function encryptionKeyOf(address account) external view returns (bytes32) {
        return _encryptionKeys[account];
    }

    // ------------------------------------------------------------ Datanet keys

    /// @notice Publishes a private Datanet's X25519 public key and the CID of its key-grants
    /// document. A different key starts a new version (rotation: new files are encrypted to it);
    /// the current key again only replaces the document (e.g. to add a holder). Owner only.
    /// Emits {DatanetKeySet}.
    function setDatanetKey(uint256 datanetId, bytes32 publicKey, string calldata keyGrantsCID) external {
        // Checks
        // Only the owner matters here; the treasury is deliberately not read.
        // slither-disable-next-line unused-return
        (address owner,) = datanets.ownerAndTreasury(datanetId);
        if (owner == address(0)) revert KeyRegistryUnknownDatanet(datanetId);
        if (owner != msg.sender) revert KeyRegistryNotOwner(datanetId, msg.sender);
        if (!datanets.getDatanet(datanetId).isPrivate) revert KeyRegistryNotPrivate(datanetId);
        if (publicKey == bytes32(0)) revert KeyRegistryInvalidKey();
        if (bytes(keyGrantsCID).length == 0) revert KeyRegistryEmptyCID();
        // Effects
        uint64 version = _keyVersions[datanetId];
        if (version == 0 || _datanetKeys[datanetId][version].publicKey != publicKey) {
            version += 1;
            _keyVersions[datanetId] = version;
        }
        _datanetKeys[datanetId][version] = DatanetKey(publicKey, keyGrantsCID);
        emit DatanetKeySet(datanetId, version, publicKey, keyGrantsCID);
    }

    /// @notice A Datanet's current public key, its version and key-grants CID (version 0 and an
    /// empty key when none was published).
    function datanetKey(uint256 datanetId)
        external
        view
        returns (bytes32 publicKey, uint64 keyVersion, string memory keyGrantsCID)
    {
        keyVersion = _keyVersions[datanetId];
        DatanetKey storage k = _datanetKeys[datanetId][keyVersion];
        return (k.publicKey, keyVersion, k.keyGrantsCID);
    }

    /// @notice Version `keyVersion` of a Datanet's key (empty if there is no such version).
    function datanetKeyAt(uint256 datanetId, uint64 keyVersion) external view returns (DatanetKey memory) {
        return _datanetKeys[datanetId][keyVersion];
    }

    // ------------------------------------------------------------------ grants

    /// @notice Records that `grantee` may read a private Datanet: for job `jobId` (the file keys
    /// of that job's training set, by the owner or a curator) or, with `jobId == 0`, a standing
    /// grant of the Datanet key (owner only). A later grant for the same triple replaces it.
    /// The job id is not checked here: the grant document names the job, the node and each file,
    /// and nodes check it against the ModelRegistry and the contributions before using it.
    /// Emits {AccessGranted}.
    function grantAccess(uint256 datanetId, address grantee, uint256 jobId, string calldata grantCID) external {
        // Checks
        // Only the owner matters here; the treasury is deliberately not read.
        // slither-disable-next-line unused-return
        (address owner,) = datanets.ownerAndTreasury(datanetId);
        if (owner == address(0)) revert KeyRegistryUnknownDatanet(datanetId);
        if (msg.sender != owner) {
            // The Datanet key itself is the owner's to give; curators grant per job only.
            if (jobId == 0) revert KeyRegistryNotOwner(datanetId, msg.sender);
            if (!datanets.isCurator(datanetId, msg.sender)) revert KeyRegistryNotGranter(datanetId, msg.sender);
        }
        uint64 version = _keyVersions[datanetId];
        if (version == 0) {
            if (!datanets.getDatanet(datanetId).isPrivate) revert KeyRegistryNotPrivate(datanetId);
            revert KeyRegistryNoDatanetKey(datanetId);
        }
        if (grantee == address(0)) revert KeyRegistryInvalidGrantee();
        if (bytes(grantCID).length == 0) revert KeyRegistryEmptyCID();
        // Effects
        _grants[datanetId][grantee][jobId] = Grant(grantCID, version);
        emit AccessGranted(datanetId, grantee, jobId, grantCID, version);
    }

    /// @notice The latest grant to `grantee` for `jobId` on a Datanet (empty CID if none).
    function grantOf(uint256 datanetId, address grantee, uint256 jobId) external view returns (Grant memory) {
        return _grants[datanetId][grantee][jobId];
    }

    /// @notice A Datanet's current key version (0: no key published yet).
    function keyVersionOf(uint256 datanetId) external view returns (uint64) {
        return _keyVersions[datanetId];
    }
}
