"""One exception tree for the whole node.

Every error says what was wrong, the offending value, and how to fix it. Subclasses also
inherit the matching builtin (as web3.py does), so callers can catch either.
"""

from __future__ import annotations

from typing import Any


class NodeError(Exception):
    """Base of every error the node raises on purpose."""


class ConfigError(NodeError, ValueError):
    """A setting is missing or invalid."""


class InputError(NodeError, ValueError):
    """A value given on the command line (or to an API) is invalid: an address, an amount, a file."""


class KeystoreError(NodeError, ValueError):
    """A key could not be loaded or stored (wrong password, missing file, bad format)."""


class ChainError(NodeError):
    """Anything that went wrong talking to the chain."""


class RpcUnavailableError(ChainError, ConnectionError):
    """The JSON-RPC endpoint did not answer after retries."""


class DeploymentError(ChainError, LookupError):
    """No (or a mismatching) deployment file for the network."""


class ArtifactError(ChainError, FileNotFoundError):
    """Compiled contract artifacts are missing or unreadable."""


class TransactionError(ChainError):
    """A transaction could not be sent or was mined but failed without a decodable reason."""


class ContractRevertError(ChainError):
    """A call or transaction reverted with a custom error of our contracts (or a string/panic).

    `name` is the Solidity error name (e.g. ``DatanetStakeTooLow``), `args` its decoded
    arguments by parameter name. Match on `name`; the message adds a hint on how to fix it.
    """

    def __init__(self, name: str, args: dict[str, Any], hint: str = "", tx_hash: str | None = None):
        self.name = name
        self.args_by_name = args
        self.hint = hint
        self.tx_hash = tx_hash
        rendered = ", ".join(f"{k}={_fmt(v)}" for k, v in args.items())
        msg = f"contract reverted: {name}({rendered})"
        if tx_hash:
            msg += f" in tx {tx_hash}"
        if hint:
            msg += f". {hint}"
        super().__init__(msg)


def _fmt(v: Any) -> str:
    if isinstance(v, bytes):
        return "0x" + v.hex()
    return str(v)


class DataValidationError(NodeError, ValueError):
    """A data file failed validation; nothing may be uploaded or staked for it.

    `report` (a `node.data.validate.ValidationReport`) lists every error with its file, line,
    field and a hint how to fix it; the message shows the first `max_listed`.
    """

    def __init__(self, report: Any, max_listed: int = 10, message: str | None = None):
        self.report = report  # Any: errors.py imports no module of ours
        super().__init__(message or report.render(max_listed))


class ContributionError(NodeError):
    """Contributing a file failed at a step after validation (upload or chain submission)."""


class AccessDeniedError(NodeError, PermissionError):
    """This account holds no key grant for the private data it tried to read.

    The message names the Datanet, the job and the account, and who has to do what (usually the
    Datanet owner running `datanet grant --job N`)."""


class GrantCoverageError(AccessDeniedError):
    """A key grant exists for the job but does not cover this file (it was approved after the
    grant): the file is left out of the training set, the rest of the set stands."""


class DecryptionError(NodeError, ValueError):
    """Encrypted data or a key document is malformed, tampered with, or for another key."""


class StorageError(NodeError):
    """Anything that went wrong with the content store (IPFS or the embedded one)."""


class ContentMismatchError(StorageError, ValueError):
    """Bytes that do not match their CID or on-chain sha256: rejected, never used."""


class ContentNotFoundError(StorageError, LookupError):
    """The store does not have (or could not find in time) the content of a CID."""


class StorageUnavailableError(StorageError, ConnectionError):
    """The IPFS API did not answer after retries."""
