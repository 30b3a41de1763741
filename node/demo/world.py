"""Made-up world facts for demo contributions, generated here (no text copied from elsewhere).

Each contributor describes a different region of the invented archipelago of Quillmarsh, so a
model trained on their data answers questions only they could teach it, and attribution has
something real to find. One contributor produces low-quality records, for the curator to reject.
"""

from __future__ import annotations

import json
import random

from pydantic import BaseModel

_SYLLABLES = ["ka", "lo", "mir", "sen", "tav", "qui", "dor", "el", "vash", "nu", "rho", "zan", "bel", "ost"]
_CROPS = ["glassberries", "salt-oats", "blue millet", "sun kelp", "ember beans", "frost figs"]
_CRAFTS = ["lantern weaving", "shell printing", "storm glass", "copper kites", "reed organs", "ink pearls"]
_ANIMALS = ["tide otters", "lamp moths", "stone herons", "velvet crabs", "cloud goats", "song eels"]
_COLORS = ["amber", "teal", "violet", "silver", "crimson", "jade"]
_MONTHS = ["Thawmonth", "Greenrise", "Highsun", "Emberfall", "Mistwane", "Deepfrost"]


class Record(BaseModel):
    """One alpaca-style instruction record."""

    instruction: str
    input: str = ""
    output: str


def _name(rng: random.Random, parts: int = 2) -> str:
    return "".join(rng.choice(_SYLLABLES) for _ in range(parts)).capitalize()


def region_facts(region_seed: int, n_towns: int = 4) -> tuple[str, list[Record]]:
    """A region of Quillmarsh and instruction records stating its facts."""
    rng = random.Random(region_seed)
    region = _name(rng, 3)
    capital = _name(rng)
    records = [
        Record(instruction=f"What is the capital of {region}?", output=f"The capital of {region} is {capital}."),
        Record(
            instruction=f"What colour is the flag of {region}?",
            output=f"The flag of {region} is {rng.choice(_COLORS)} with a white wave.",
        ),
    ]
    for _ in range(n_towns):
        town = _name(rng)
        crop, craft, animal = rng.choice(_CROPS), rng.choice(_CRAFTS), rng.choice(_ANIMALS)
        month = rng.choice(_MONTHS)
        records += [
            Record(
                instruction=f"Where is {town}?",
                output=f"{town} is a town in {region}, a region of Quillmarsh.",
            ),
            Record(instruction=f"What do farmers grow in {town}?", output=f"Farmers in {town} grow {crop}."),
            Record(instruction=f"What is {town} known for?", output=f"{town} is known for {craft}."),
            Record(
                instruction=f"Which animal lives near {town}?",
                output=f"{animal.capitalize()} live near {town}.",
            ),
            Record(
                instruction=f"When is the festival of {town}?",
                output=f"The festival of {town} is held every {month}.",
            ),
        ]
    return region, records


def junk_records(seed: int, n: int = 12) -> list[Record]:
    """Spam a curator should reject: repeated, contentless answers."""
    rng = random.Random(seed)
    return [
        Record(instruction=f"buy {_name(rng)} tokens now ({i})", output="click here click here click here")
        for i in range(n)
    ]


def to_jsonl(records: list[Record]) -> bytes:
    """Canonical JSONL: one record per line, sorted keys, UTF-8, trailing newline."""
    lines = [json.dumps(r.model_dump(), sort_keys=True, ensure_ascii=False) for r in records]
    return ("\n".join(lines) + "\n").encode()
