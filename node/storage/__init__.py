"""Content addressing and content stores (IPFS-compatible): the embedded store by default, a
real IPFS node (Kubo RPC API) when `ipfs_api` is configured."""

from __future__ import annotations

from node.config import Settings
from node.storage.base import ContentStore


def open_store(settings: Settings, ipfs_api: str | None = None) -> ContentStore:
    """The configured store: a Kubo-API node if an API URL is given, else the embedded one."""
    api = ipfs_api or settings.ipfs_api
    if api:
        from node.storage.kubo import KuboStore

        return KuboStore(api, timeout=settings.ipfs_timeout)
    from node.storage.embedded import EmbeddedStore

    return EmbeddedStore(settings.data_dir / "ipfs")
