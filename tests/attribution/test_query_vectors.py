"""Committed query vectors (`node.attribution.query_vectors`) and `datanet verify`'s check of them:
a recomputed V_k within the tolerance matches (float noise far beyond another CPU's included), a
V_k off by 1 % does not, a file that is not the committed one or not committed at all fails with
the reason, and a file of the wrong shape or format is refused on load."""

from __future__ import annotations

import hashlib
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from node.attribution import query_vectors as QV
from node.attribution.document import SnapshotInfo
from node.daemon.verify import QUERY_TOLERANCE, _check_query_vectors, _Checks
from node.storage.embedded import EmbeddedStore

D, Q = 96, 5


def _committed(store: EmbeddedStore, root: Path, vs: list[torch.Tensor], *, commit: bool = True) -> SimpleNamespace:
    """A document whose snapshots commit `vs` (uploaded), as `verify` reads it."""
    infos = []
    for k, v in enumerate(vs):
        data = QV.save(root / "node", k, v).read_bytes()
        cid = store.add_bytes(data)
        sha = "0x" + hashlib.sha256(data).hexdigest()
        committed = {"queries_cid": cid, "queries_sha256": sha} if commit else {}
        infos.append(SnapshotInfo(index=k, cid=cid, sha256="0x" + "11" * 32, step=k + 1, lr_sum=1.0, **committed))
    return SimpleNamespace(snapshots=infos)


def _check(store: EmbeddedStore, tmp: Path, doc: SimpleNamespace, mine: list[torch.Tensor]) -> _Checks:
    for k, v in enumerate(mine):
        QV.save(tmp / "mine", k, v)
    checks = _Checks()
    _check_query_vectors(checks, store, doc, tmp / "mine", tmp / "fetched")  # type: ignore[arg-type]
    return checks


def test_query_vectors_match_within_the_tolerance_and_not_beyond(tmp_path: Path) -> None:
    g = torch.Generator().manual_seed(0)
    vs = [torch.randn(D, Q, generator=g, dtype=torch.float64) for _ in range(2)]
    store = EmbeddedStore(tmp_path / "ipfs")
    doc = _committed(store, tmp_path, vs)

    noisy = [v * (1 + 1e-6 * torch.randn(D, Q, generator=g, dtype=torch.float64)) for v in vs]
    checks = _check(store, tmp_path / "a", doc, noisy)
    assert checks.ok and [c.name for c in checks.items] == [
        "query vectors file 0", "query vectors file 1", "query vectors 0", "query vectors 1"]  # fmt: skip

    off = [vs[0], vs[1] * 1.01]  # snapshot 1's V is 1 % longer than committed
    checks = _check(store, tmp_path / "b", doc, off)
    failed = [c for c in checks.items if not c.ok]
    assert [c.name for c in failed] == ["query vectors 1"] and "1.00e-02 of its norm" in failed[0].detail
    assert QUERY_TOLERANCE < 0.01


def test_a_query_vectors_file_other_than_committed_or_not_committed_fails(tmp_path: Path) -> None:
    v = torch.ones(D, Q, dtype=torch.float64)
    store = EmbeddedStore(tmp_path / "ipfs")
    doc = _committed(store, tmp_path, [v])
    lying = SimpleNamespace(snapshots=[doc.snapshots[0].model_copy(update={"queries_sha256": "0x" + "22" * 32})])
    checks = _check(store, tmp_path / "a", lying, [v])
    assert [(c.name, c.ok) for c in checks.items] == [("query vectors file 0", False)]
    bare = _committed(store, tmp_path / "bare", [v], commit=False)
    checks = _check(store, tmp_path / "b", bare, [v])
    assert not checks.ok and "commits no query vectors" in checks.items[0].detail


def test_a_query_vectors_file_of_another_shape_is_refused(tmp_path: Path) -> None:
    path = QV.save(tmp_path, 2, torch.zeros(D, Q, dtype=torch.float64))
    assert QV.load(path, snapshot=2, dim=D, queries=Q).shape == (D, Q)
    with pytest.raises(QV.QueryVectorsError, match=rf"expected .* snapshot 1, float64 \({D}, {Q + 1}\)"):
        QV.load(path, snapshot=1, dim=D, queries=Q + 1)
    (tmp_path / "junk.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(QV.QueryVectorsError, match="cannot read query vectors"):
        QV.load(tmp_path / "junk.safetensors", snapshot=0, dim=D, queries=Q)
