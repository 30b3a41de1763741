"""A model's training set as an infini-gram suffix-array index: built once per trained model, opened
by the serving node to find which training examples a response repeats (`node.attribution.spans`).

Why these documents. One document per trained example, holding exactly the tokens the model was
trained to produce: `node.train.formatting.tokenize_example` (the trainer's own tokenisation, chat
template included), cut to `max_seq_len` as the trainer cuts it, keeping only the positions whose
label is not ignored. For a chat example that is every assistant reply with its end-of-turn marker
(prompts, system turns and role headers are context the model never learned to emit); for a text
example the whole text; with `train_on_prompt` the prompts too. The separate trainable runs of one
example (the replies of a multi-turn chat) are joined by `segment separator`, an id no tokenizer
emits, so no match can run from one reply into the next, and the example is still one document
(a span repeated by several replies of one example counts that example once). Held-out examples
(the trainer's eval split, `train_indices`) were never trained on and are left out.

Files. ``<out_dir>/span-index.json`` (`SpanIndexManifest`, written last: an index without it is
missing, not half-built) and ``<out_dir>/shard/`` with infini-gram's single-shard layout:

* ``tokenized.0``: per document, the separator 0xffff then its token ids as little-endian u16
  (0xfffe between the trainable runs of one example);
* ``offset.0``: u64 byte offset of each document's separator;
* ``metadata.0`` / ``metaoff.0``: one JSON line per document in infini-gram's own shape,
  ``{"linenum": k, "metadata": {"contribution_id", "contributor", "example_index"}, "path": ...}``,
  and u64 offsets of those lines, so infini-gram's ``get_doc_by_ptr`` returns who gave it;
* ``table.0``: the suffix array written by infini-gram's ``rust_indexing`` binary (make-part,
  merge, concat, as its ``indexing.py`` runs them; that module itself is not imported: it loads
  tokenizers from a model hub).

Vocabularies beyond u16 (65,534 ids beside the two separators; Llama 3, Qwen) are stored through
``id-map.u32``, the sorted distinct ids the training set uses (a fine-tuning set uses far fewer
than 65,534): the index holds each id's position in it, and a response id not in it cannot match.
infini-gram's own u32 layout is not an option: ``rust_indexing`` sizes its sort buckets by the
alphabet, 2^32 x 8 bytes, and aborts ("memory allocation of 34359738368 bytes failed").

Every byte is a function of the training set, the tokenizer and the two formatting settings, so
two builds give identical files, and a build over an index of the same inputs reuses it. The
manifest records the tokenizer's identity (`TokenizerIdentity`: the hash of its vocabulary,
merges, added tokens, normaliser and pre-tokeniser), so ids from another tokenizer are refused
instead of matched as nonsense, and each file's size and sha256, checked when it is opened.

infini-gram (PyPI ``infini-gram`` 2.6.0, by Jiacheng Liu; package metadata ``License: Apache
2.0``) provides the engine and ``rust_indexing``; we call them, and copy none of their code.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from node import safe_json
from node.data.manifest import TrainingSet
from node.errors import NodeError
from node.train.base_model import file_lock
from node.train.formatting import IGNORE, tokenize_example, truncate

FORMAT: Literal["datanet-span-index-v1"] = "datanet-span-index-v1"
MANIFEST = "span-index.json"
SHARD = "shard"  # holds only infini-gram's files: its engine classifies every file in the folder
FILES = ("tokenized.0", "offset.0", "metadata.0", "metaoff.0", "table.0")
# infini-gram's engine sorts a folder's files by substrings of their *whole* path, so a folder
# whose path contains one of these is opened through a temporary link (`_engine_path`).
_ENGINE_WORDS = ("tokenized", "table", "offset", "metadata", "metaoff", "unigram")
_RUST_TIMEOUT_S = 3600


class SpanIndexError(NodeError):
    """A span index could not be built, opened or queried (the message names the cause and fix)."""


class SpanIndexMissingError(SpanIndexError, FileNotFoundError):
    """No finished span index in the folder (never built, or its build did not finish)."""


class SpanIndexCorruptError(SpanIndexError, ValueError):
    """A span index whose files do not match its manifest, or do not hold together."""


class TokenizerMismatchError(SpanIndexError, ValueError):
    """The tokenizer given is not the one the index was built with."""


class VocabularyTooLargeError(SpanIndexError, ValueError):
    """The tokenizer's ids do not fit the token type (two ids are reserved as separators)."""


# infini-gram's u16 layout. Its u32 layout is not used: rust_indexing 2.6.0 sizes its suffix-array
# buckets by the alphabet (2^32 x 8 bytes = 32 GiB for u32; it aborts on these machines).
TOKEN_WIDTH = 2
DOC_SEP = 0xFFFF  # infini-gram's document separator (all bits set)
SEGMENT_SEP = 0xFFFE  # ours, between the trainable runs of one example
MAX_IDS = 0xFFFE  # stored ids are 0..MAX_IDS-1, clear of both separators
ID_MAP = "id-map.u32"


def needs_id_map(vocab_size: int, remap_ids: bool | None = None) -> bool:
    """Whether the tokenizer's ids must be stored through a dense map (vocabularies beyond u16)."""
    return vocab_size > MAX_IDS if remap_ids is None else remap_ids


def dense_ids(used: np.ndarray) -> np.ndarray:
    """The sorted distinct ids a training set uses, whose positions are the ids stored in the index;
    `VocabularyTooLargeError` if there are more than u16 holds."""
    distinct = np.unique(used)
    if len(distinct) > MAX_IDS:
        raise VocabularyTooLargeError(
            f"the training set uses {len(distinct):,} distinct token ids; the index stores at most {MAX_IDS:,} "
            "(infini-gram's u16 layout, two ids reserved as separators, and its u32 indexer needs 32 GiB). "
            "Split the training set, or index it with a tokenizer of a smaller vocabulary."
        )
    return distinct.astype("<u4")


class TokenizerIdentity(BaseModel):
    """What makes two tokenizers give the same ids for the same text."""

    model_config = ConfigDict(frozen=True)

    name: str = Field(description="Last part of name_or_path when the index was built (informative only).")
    vocab_size: int = Field(ge=1, description="len(tokenizer), added tokens included.")
    sha256: str = Field(description="sha256 of the vocabulary, merges, added tokens, normaliser, pre-tokeniser.")


def tokenizer_identity(tokenizer: Any) -> TokenizerIdentity:
    """The identity of a Hugging Face tokenizer (fast: its backend's model; slow: its vocabulary)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        full = json.loads(backend.to_str())
        # truncation/padding are run-time settings a caller may change; they change no id
        parts: Any = {k: full.get(k) for k in ("model", "added_tokens", "normalizer", "pre_tokenizer")}
    else:
        parts = sorted(((i, t) for t, i in tokenizer.get_vocab().items()))
    digest = hashlib.sha256(_canonical(parts)).hexdigest()
    name = Path(str(getattr(tokenizer, "name_or_path", "") or "")).name  # no machine-specific folders
    return TokenizerIdentity(name=name, vocab_size=len(tokenizer), sha256=digest)


class FileDigest(BaseModel):
    model_config = ConfigDict(frozen=True)

    size: int = Field(ge=0)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class SpanIndexManifest(BaseModel):
    """``span-index.json``: what the index was built from and the bytes it must have."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    format: Literal["datanet-span-index-v1"] = FORMAT
    job_id: int = Field(ge=0)
    data_root: str = Field(description="The manifest's data root: which training set this indexes.")
    tokenizer: TokenizerIdentity
    token_dtype: Literal["u16"] = "u16"
    id_map: bool = Field(description=f"Ids are stored as positions in {ID_MAP} (sorted distinct ids used).")
    train_on_prompt: bool
    max_seq_len: int | None
    documents: int = Field(ge=1, description="Trained examples with at least one trainable token.")
    tokens: int = Field(ge=1, description="Tokens indexed, separators included.")
    pointer_bytes: int = Field(ge=1, le=8, description="Bytes per suffix-array entry (rust_indexing's ratio).")
    files: dict[str, FileDigest] = Field(description="By path relative to the index folder.")


class SpanIndexInfo(BaseModel):
    """What `build_span_index` returns: the manifest, where it is, and what the build cost."""

    manifest: SpanIndexManifest
    dir: Path
    reused: bool = Field(description="True when an index of exactly these inputs was already there.")
    seconds: float = Field(description="Wall time of this call.")


def build_span_index(
    training_set: TrainingSet,
    tokenizer: Any,
    out_dir: Path,
    *,
    train_on_prompt: bool = False,
    max_seq_len: int | None = None,
    train_indices: Sequence[int] | None = None,
    remap_ids: bool | None = None,
) -> SpanIndexInfo:
    """Index the examples a model was trained on (pass the job's `TrainConfig.train_on_prompt` and
    `max_seq_len`, and the trainer's train split); idempotent, and safe against a crash midway.
    `remap_ids` (default: only for vocabularies beyond 65,534 ids) stores ids through a dense map.

    Raises `VocabularyTooLargeError`, `SpanIndexError` (no trainable token in the set, or
    `rust_indexing` failed).
    """
    started = time.perf_counter()
    out = Path(out_dir)
    ident = tokenizer_identity(tokenizer)
    docs = _documents(training_set, tokenizer, train_on_prompt, max_seq_len, train_indices)
    if not docs:
        raise SpanIndexError(
            f"job {training_set.manifest.job_id}: none of its {len(training_set.examples)} examples has a trainable "
            "token to index; check train_indices and max_seq_len"
        )
    id_map = needs_id_map(ident.vocab_size, remap_ids)
    blobs = _encode(docs, training_set, ident.vocab_size, id_map)
    settings = {
        "job_id": training_set.manifest.job_id, "data_root": training_set.manifest.data_root, "tokenizer": ident,
        "id_map": id_map, "train_on_prompt": train_on_prompt, "max_seq_len": max_seq_len, "documents": len(docs),
        "tokens": len(blobs[f"{SHARD}/tokenized.0"]) // TOKEN_WIDTH,
    }  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    with file_lock(out / ".lock"):
        existing = _reusable(out, blobs, settings)
        if existing is not None:
            return SpanIndexInfo(manifest=existing, dir=out, reused=True, seconds=time.perf_counter() - started)
        manifest = _write(out, blobs, settings)
    return SpanIndexInfo(manifest=manifest, dir=out, reused=False, seconds=time.perf_counter() - started)


# --------------------------------------------------------------------------- documents


@dataclass(frozen=True)
class _Document:
    example_index: int
    segments: list[list[int]]  # the trainable runs of the example, in order


def _documents(
    ts: TrainingSet, tokenizer: Any, train_on_prompt: bool, max_seq_len: int | None, train_indices: Sequence[int] | None
) -> list[_Document]:
    n = len(ts.examples)
    if len(ts.manifest.entries) != n:
        raise SpanIndexError(f"training set has {n} examples but {len(ts.manifest.entries)} manifest entries")
    chosen = range(n) if train_indices is None else sorted(set(train_indices))
    docs: list[_Document] = []
    for k in chosen:
        if not 0 <= k < n:
            raise SpanIndexError(f"train index {k} is out of range: the training set has {n} examples")
        tok = tokenize_example(tokenizer, ts.examples[k], train_on_prompt)
        if max_seq_len is not None:
            tok = truncate(tok, max_seq_len)
        runs: list[list[int]] = []
        prev = False
        for tid, label in zip(tok.input_ids, tok.labels, strict=True):
            on = label != IGNORE
            if on and not prev:
                runs.append([])
            if on:
                runs[-1].append(int(tid))
            prev = on
        if runs:
            docs.append(_Document(k, runs))
    return docs


def _encode(docs: list[_Document], ts: TrainingSet, vocab_size: int, id_map: bool) -> dict[str, bytes]:
    """Every file but ``table.0`` (built from ``tokenized.0``), by path relative to the index."""
    flat = np.asarray([t for d in docs for seg in d.segments for t in seg], dtype=np.int64)
    if flat.min() < 0 or flat.max() >= vocab_size:
        raise SpanIndexError(f"the tokenizer produced id {int(flat.max())}, beyond its {vocab_size} ids")
    if not id_map and vocab_size > MAX_IDS:
        raise VocabularyTooLargeError(
            f"a vocabulary of {vocab_size:,} ids does not fit infini-gram's u16 layout ({MAX_IDS:,} ids beside two "
            "separators); build with remap_ids left unset (or True) to store ids through a dense map"
        )
    table = dense_ids(flat) if id_map else None
    pieces: list[np.ndarray] = []
    offsets: list[int] = []
    meta_lines: list[bytes] = []
    pos = 0
    for d in docs:
        ids: list[int] = [DOC_SEP]
        for i, seg in enumerate(d.segments):
            stored = seg if table is None else np.searchsorted(table, seg).tolist()
            ids += ([SEGMENT_SEP] if i else []) + stored
        pieces.append(np.asarray(ids, dtype="<u2"))
        offsets.append(pos)
        pos += len(ids) * TOKEN_WIDTH
        e = ts.manifest.entries[d.example_index]
        meta = {"contribution_id": e.contribution_id, "contributor": e.contributor, "example_index": e.index}
        meta_lines.append(_canonical({"linenum": e.index, "metadata": meta, "path": f"job-{ts.manifest.job_id}"}))
    meta_offsets = np.cumsum([0] + [len(m) + 1 for m in meta_lines[:-1]])
    blobs = {
        f"{SHARD}/tokenized.0": np.concatenate(pieces).tobytes(),
        f"{SHARD}/offset.0": np.asarray(offsets, dtype="<u8").tobytes(),
        f"{SHARD}/metadata.0": b"".join(m + b"\n" for m in meta_lines),
        f"{SHARD}/metaoff.0": np.asarray(meta_offsets, dtype="<u8").tobytes(),
    }
    if table is not None:
        blobs[ID_MAP] = table.tobytes()
    return blobs


# --------------------------------------------------------------------------- files


def _reusable(out: Path, blobs: dict[str, bytes], settings: dict[str, Any]) -> SpanIndexManifest | None:
    """The manifest of an index already in `out` built from these exact inputs, if its files verify."""
    if not (out / MANIFEST).is_file():
        return None
    try:
        m = read_manifest(out)
        verify_files(out, m, hashes=True)
    except SpanIndexError:
        return None
    same = all(getattr(m, k) == v for k, v in settings.items()) and all(
        name in m.files and m.files[name].sha256 == hashlib.sha256(b).hexdigest() for name, b in blobs.items()
    )
    return m if same else None


def _write(out: Path, blobs: dict[str, bytes], settings: dict[str, Any]) -> SpanIndexManifest:
    tmp = Path(tempfile.mkdtemp(prefix=".build-", dir=out))
    try:
        (tmp / SHARD).mkdir()
        for name, b in blobs.items():
            (tmp / name).write_bytes(b)
        ratio = _suffix_array(tmp / SHARD, tmp, len(blobs[f"{SHARD}/tokenized.0"]))
        names = [*(f"{SHARD}/{f}" for f in FILES), *([ID_MAP] if settings["id_map"] else [])]
        files = {name: _digest(tmp / name) for name in names}
        manifest = SpanIndexManifest(**settings, pointer_bytes=ratio, files=files)
        (out / MANIFEST).unlink(missing_ok=True)  # from here until the last line, the index is "missing"
        shutil.rmtree(out / SHARD, ignore_errors=True)
        os.replace(tmp / SHARD, out / SHARD)
        if settings["id_map"]:
            os.replace(tmp / ID_MAP, out / ID_MAP)
        else:
            (out / ID_MAP).unlink(missing_ok=True)
        _atomic_write(out / MANIFEST, _canonical(manifest.model_dump(mode="json")) + b"\n")
        return manifest
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _suffix_array(shard: Path, tmp: Path, ds_size: int) -> int:
    """``table.0`` by rust_indexing, as infini-gram's indexing.py runs it with one job; returns the
    pointer width in bytes (its ``ratio``)."""
    import infini_gram

    binary = Path(infini_gram.__file__).parent / "rust_indexing"
    ratio = max(1, math.ceil(math.log2(ds_size) / 8))
    parts, merged = tmp / "parts", tmp / "merged"
    parts.mkdir()
    merged.mkdir()
    data = str(shard / "tokenized.0")
    common = ["--ratio", str(ratio), "--token-width", str(TOKEN_WIDTH)]
    steps = [
        ["make-part", "--data-file", data, "--parts-dir", str(parts), "--start-byte", "0", "--end-byte", str(ds_size)],
        ["merge", "--data-file", data, "--parts-dir", str(parts), "--merged-dir", str(merged), "--num-threads", "1",
         "--hacksize", "100000"],
        ["concat", "--data-file", data, "--merged-dir", str(merged), "--merged-file", str(shard / "table.0"),
         "--num-threads", "1"],
    ]  # fmt: skip
    for step in steps:
        try:
            r = subprocess.run([str(binary), *step, *common], capture_output=True, text=True, timeout=_RUST_TIMEOUT_S)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise SpanIndexError(f"infini-gram's rust_indexing {step[0]} could not run ({binary}): {e}") from e
        if r.returncode != 0:
            why = r.stderr.strip()[-500:]
            raise SpanIndexError(f"infini-gram's rust_indexing {step[0]} failed with exit status {r.returncode}: {why}")
    return ratio


def read_manifest(index_dir: Path) -> SpanIndexManifest:
    """The manifest of a finished index; `SpanIndexMissingError` if there is none."""
    path = Path(index_dir) / MANIFEST
    if not path.is_file():
        raise SpanIndexMissingError(
            f"no span index at {index_dir} (no {MANIFEST}): it was never built there, or its build did not "
            "finish. Build it with build_span_index for the model's training set."
        )
    try:
        return safe_json.load_model(SpanIndexManifest, path.read_bytes(), str(path))
    except safe_json.UntrustedJsonError as e:
        raise SpanIndexCorruptError(f"span index manifest {path} is unreadable: {e}. Rebuild the index.") from e


def verify_files(index_dir: Path, m: SpanIndexManifest, *, hashes: bool) -> None:
    """Sizes (always) and sha256 (with `hashes`) against the manifest, and the layout invariants
    infini-gram's engine asserts (it aborts the process on a violated one, so they are checked here)."""
    d = Path(index_dir)
    names = [*(f"{SHARD}/{f}" for f in FILES), *([ID_MAP] if m.id_map else [])]
    for name in names:
        p, want = d / name, m.files.get(name)
        got = p.stat().st_size if p.is_file() else None
        if want is None or got != want.size:
            raise SpanIndexCorruptError(
                f"span index {d}: {name} is {'missing' if got is None else f'{got} bytes'}, its manifest says "
                f"{f'{want.size} bytes' if want else 'nothing'}. Rebuild the index."
            )
        if hashes and _digest(p).sha256 != want.sha256:
            raise SpanIndexCorruptError(
                f"span index {d}: {name} does not match the sha256 in its manifest. Rebuild the index."
            )
    size = {f: m.files[f"{SHARD}/{f}"].size for f in FILES}
    layout_ok = (
        size["tokenized.0"] == m.tokens * TOKEN_WIDTH
        and size["table.0"] == m.tokens * m.pointer_bytes
        and size["offset.0"] == 8 * m.documents == size["metaoff.0"]
        and (not m.id_map or m.files[ID_MAP].size % 4 == 0)
    )
    if not layout_ok:
        raise SpanIndexCorruptError(f"span index {d}: file sizes do not fit together ({size}). Rebuild the index.")


def engine_path(shard: Path) -> tuple[Path, Path | None]:
    """A path to `shard` free of the words infini-gram sorts files by: the folder itself, or a link to
    it in a fresh temporary folder (returned second, for the caller to remove once the engine is open)."""
    resolved = shard.resolve()
    if not any(w in str(resolved) for w in _ENGINE_WORDS):
        return resolved, None
    tmp = Path(tempfile.mkdtemp(prefix="spanidx-"))
    link = tmp / "s"
    if any(w in str(link) for w in _ENGINE_WORDS):
        shutil.rmtree(tmp)
        raise SpanIndexError(
            f"span index at {shard}: its path contains one of {_ENGINE_WORDS}, which infini-gram's engine "
            "mistakes for its own file names, and so does the temporary folder. Move the index or set TMPDIR."
        )
    link.symlink_to(resolved, target_is_directory=True)
    return link, tmp


def _digest(path: Path) -> FileDigest:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return FileDigest(size=path.stat().st_size, sha256=h.hexdigest())


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()
