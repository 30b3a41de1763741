"""Results of benchmarks/gas.py: pydantic models, the posting check, and the markdown section
it writes into docs/benchmarks.md (between `<!-- gas:begin -->` and `<!-- gas:end -->`)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from pydantic import BaseModel, Field, computed_field

from node.chain.devchain import anvil_path
from node.config import REPO_ROOT
from node.errors import NodeError

DOC = REPO_ROOT / "docs" / "benchmarks.md"
BEGIN, END = "<!-- gas:begin -->", "<!-- gas:end -->"


class GasBenchmarkError(NodeError):
    """The benchmark could not run, or a result broke one of its promises."""


class CallGas(BaseModel):
    call: str
    contract: str
    first: int = Field(description="gasUsed on a fresh deployment.")
    repeat: int = Field(description="gasUsed the second time through the same flow.")
    note: str = ""


class ClaimGas(BaseModel):
    """One leaf claimed from ours and from the baseline, each from the same state."""

    index: int = Field(description="Leaf index (first, middle or last).")
    proof_len: int
    baseline_proof_len: int
    first: int = Field(description="The first claim in its 256-leaf bitmap word (zero word -> non-zero).")
    typical: int | None = Field(
        description="After another leaf of the same word was claimed, as for 255 of 256 claims; "
        "None when the word holds this leaf only."
    )
    baseline_first: int
    baseline_typical: int | None


def _mean(xs: list[int | None]) -> float:
    vals = [x for x in xs if x is not None]
    return sum(vals) / len(vals) if vals else float("nan")


class ScalePoint(BaseModel):
    n: int = Field(description="Contributors (leaves) in the attribution tree.")
    tree_build_s: float = Field(description="StandardMerkleTree.of wall time, seconds.")
    baseline_tree_build_s: float
    post_gas: int = Field(description="submitResult: registers the model and opens the round.")
    claims: list[ClaimGas]

    @computed_field  # type: ignore[prop-decorator]
    @property
    def claim_typical(self) -> float:
        return _mean([c.typical for c in self.claims])

    @computed_field  # type: ignore[prop-decorator]
    @property
    def claim_first(self) -> float:
        return _mean([c.first for c in self.claims])

    @computed_field  # type: ignore[prop-decorator]
    @property
    def baseline_typical(self) -> float:
        return _mean([c.baseline_typical for c in self.claims])

    @computed_field  # type: ignore[prop-decorator]
    @property
    def baseline_first(self) -> float:
        return _mean([c.baseline_first for c in self.claims])

    @computed_field  # type: ignore[prop-decorator]
    @property
    def ratio_typical(self) -> float:
        """Our claim's gas over the baseline's (1.0 = as cheap as Uniswap's)."""
        return self.claim_typical / self.baseline_typical

    @computed_field  # type: ignore[prop-decorator]
    @property
    def ratio_first(self) -> float:
        return self.claim_first / self.baseline_first


class GasReport(BaseModel):
    date: str
    anvil: str
    solc: str
    commit: str
    calls: list[CallGas]
    scale: list[ScalePoint]

    @computed_field  # type: ignore[prop-decorator]
    @property
    def post_spread(self) -> int:
        """Max minus min of submitResult's gas across N (0 for a single N)."""
        posts = [p.post_gas for p in self.scale]
        return max(posts) - min(posts) if posts else 0


def check_posting_constant(report: GasReport, limit: int) -> None:
    """Posting must not depend on N: raises if submitResult's gas varies by more than `limit`."""
    if report.post_spread > limit:
        posts = ", ".join(f"N={p.n}: {p.post_gas}" for p in report.scale)
        raise GasBenchmarkError(
            f"submitResult gas varies by {report.post_spread} across N ({posts}); the limit is {limit}. "
            "Posting should store only the root; look for per-contributor work in submitResult."
        )


# ------------------------------------------------------------------------ provenance


def tool_versions() -> tuple[str, str, str]:
    """(anvil, solc with its settings, git commit): what exactly was measured."""
    out = subprocess.run([str(anvil_path()), "--version"], capture_output=True, text=True, check=False).stdout
    anvil = out.splitlines()[0].removeprefix("anvil Version: ") if out else "unknown"
    dbg = REPO_ROOT / "artifacts/contracts/RewardDistributor.sol/RewardDistributor.dbg.json"
    build = json.loads((dbg.parent / json.loads(dbg.read_text())["buildInfo"]).read_text())
    s = build["input"]["settings"]
    ir = ", via-IR" if s.get("viaIR") else ""
    runs = s["optimizer"]["runs"]
    solc = f"{build['solcLongVersion']} (optimizer {runs:,} runs{ir}, EVM {s.get('evmVersion')})"
    commit = _git("rev-parse", "--short=12", "HEAD")
    # Gas depends on the contracts as compiled: name any that differ from the commit.
    changed = _git("diff", "--name-only", "HEAD", "--", "contracts").split()
    changed += _git("ls-files", "--others", "--exclude-standard", "--", "contracts").split()
    if changed:
        commit += " (+ uncommitted " + ", ".join(sorted(changed)) + ")"
    return anvil, solc, commit


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, check=False).stdout.strip()


# -------------------------------------------------------------------------- markdown


def _pair(a: float, b: float, fmt: str = ",.0f") -> str:
    return f"{a:{fmt}} / {b:{fmt}}"


def _calls_table(r: GasReport) -> list[str]:
    return [
        "",
        "### Every user-facing call",
        "",
        '"Fresh" is the first call on a new deployment, where counters, balances and nonces written for '
        'the first time cost ~17k-20k gas more; "repeat" is the same flow run again. Calls whose writes '
        "are alike in both passes cost the same in both: each pass sets up a new private Datanet (its "
        "trainer flag, the replacement of the metadata CID it was created with, its key and a grant) and "
        "a new account publishes its encryption key. CIDs are 59-character CIDv1s, as the content store "
        "names documents.",
        "",
        "| Call | Contract | Gas (fresh) | Gas (repeat) | Notes |",
        "|---|---|---:|---:|---|",
        *[f"| `{c.call}` | {c.contract} | {c.first:,} | {c.repeat:,} | {c.note} |" for c in r.calls],
    ]


def _scale_tables(r: GasReport) -> list[str]:
    lines = [
        "",
        "### Posting a result and claiming, by number of contributors",
        "",
        "Each N starts from one snapshot (a claimed job), so only the attribution root differs. Each "
        "claim (first, middle and last leaf, to an account holding no OPEN yet) starts from the same "
        "state: *typical* after another leaf of its 256-leaf bitmap word was claimed (255 claims in "
        "256), *first* when it is the first of its word. The baseline "
        "(contracts/test/UniswapStyleDistributor.sol, Uniswap's MerkleDistributor claim) claims the "
        "same indices, accounts and amounts from the same state. Gas columns are means over the leaves.",
        "",
        "| N | Tree build (s) | Proof length | `submitResult` gas | Claim gas: typical / first "
        "| Baseline: typical / first | Ours ÷ baseline: typical / first |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for p in r.scale:
        lens = "-".join(str(x) for x in sorted({c.proof_len for c in p.claims}))
        lines.append(
            f"| {p.n:,} | {p.tree_build_s:.2f} | {lens} | {p.post_gas:,} "
            f"| {_pair(p.claim_typical, p.claim_first)} | {_pair(p.baseline_typical, p.baseline_first)} "
            f"| {_pair(p.ratio_typical, p.ratio_first, '.2f')} |"
        )
    lines += [
        "",
        "Per leaf (proof lengths: ours, baseline):",
        "",
        "| N | Leaf | Proofs | Ours: typical / first | Baseline: typical / first |",
        "|---:|---:|---:|---:|---:|",
    ]
    for p in r.scale:
        for c in p.claims:
            ours = f"{c.typical:,}" if c.typical is not None else "n/a"
            theirs = f"{c.baseline_typical:,}" if c.baseline_typical is not None else "n/a"
            lines.append(
                f"| {p.n:,} | {c.index:,} | {c.proof_len}, {c.baseline_proof_len} "
                f"| {ours} / {c.first:,} | {theirs} / {c.baseline_first:,} |"
            )
    extra = sum(p.claim_typical - p.baseline_typical for p in r.scale) / len(r.scale)
    lines += [
        "",
        f"Posting is constant in N: `submitResult` varies by {r.post_spread:,} gas across N (only the "
        f"root's calldata bytes differ). A claim costs on average {extra:,.0f} gas more than the "
        "baseline's, for what the baseline does not do: a per-job round read from storage (root, "
        "`total`/`claimed`/claim deadline packed in one slot) where the baseline has one immutable root, "
        "the per-round `claimed` counter that keeps each job's payouts within its own pool in a "
        "contract shared by every job (and lets the remainder be swept back), the job id in the "
        "leaf and calldata, OpenZeppelin's double-hashed `abi.encode` leaf and two indexed event "
        "topics. It saves by reading the proof from calldata (`verifyCalldata`) where the baseline "
        "copies it to memory.",
    ]
    return lines


def render_markdown(r: GasReport) -> str:
    """The docs section, markers included."""
    lines = [
        BEGIN,
        "## Gas (benchmarks/gas.py)",
        "",
        f"Measured {r.date}: anvil {r.anvil}; solc {r.solc}; commit {r.commit}. Each number is a "
        "transaction's `gasUsed` from its receipt (the 21,000 base and calldata included). "
        "Regenerate with `.venv/bin/python benchmarks/gas.py`.",
    ]
    if r.calls:
        lines += _calls_table(r)
    if r.scale:
        lines += _scale_tables(r)
    return "\n".join([*lines, END])


def write_section(markdown: str, path: Path = DOC, begin: str = BEGIN, end: str = END) -> Path:
    """Replaces the section between `begin` and `end` in `path` (or appends it), keeping every
    other section; atomic. Every benchmark script writes its own section through this."""
    header = "# Benchmarks\n\nMeasured numbers. Each section is written by the script it names; rerun it to refresh.\n"
    text = path.read_text() if path.exists() else header
    if begin in text and end in text:
        start, stop = text.index(begin), text.index(end) + len(end)
        text = text[:start] + markdown + text[stop:]
    else:
        text = text.rstrip("\n") + "\n\n" + markdown + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".md.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return path
