"""Content addressing and content stores (IPFS-compatible)."""
