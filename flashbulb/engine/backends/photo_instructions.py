"""Free-text instruction -> plan of photo operations, for the `flashbulb-photo` model.

The instruction is split into clauses ("restore it, then upscale 2x"); each clause must match
at least one rule, so that a request we cannot carry out is answered, never silently skipped.
To teach the model a new edit, add a Rule (words -> operation) and an operation in photo.py.
"""

from __future__ import annotations

import dataclasses
import re

SCALE_WORDS = {"double": 2, "twice": 2, "triple": 3, "quadruple": 4}
_SCALE = re.compile(r"(?:\b(\d+(?:\.\d+)?)\s*(?:x|×|times)(?!\w))|(?:(?:\bx|×)\s*(\d+(?:\.\d+)?)\b)", re.I)


@dataclasses.dataclass(frozen=True)
class Rule:
    operation: str
    pattern: re.Pattern[str]
    # Words users write for it, listed in the model's description.
    examples: str


RULES = [
    Rule(
        "restore",
        re.compile(
            r"\b(restor\w*|repair\w*|fix\w*|enhanc\w*|improv\w*|clean\w*\s*up|old\s+(photo|picture|image)"
            r"|de-?nois\w*|noise|grain\w*|remaster\w*|better|quality)\b",
            re.I,
        ),
        "restore, repair, fix, enhance, improve, clean up, denoise, remove grain",
    ),
    Rule(
        "upscale",
        re.compile(
            r"\b(upscal\w*|upsampl\w*|enlarg\w*|super[\s-]?res\w*|(higher|increase\w*|more)\s+resolution"
            r"|bigger|larger|double|twice|triple|quadruple|hd|4k)\b|" + _SCALE.pattern,
            re.I,
        ),
        "upscale, enlarge, super-resolution, higher resolution, bigger, 2x/x4/×3, double",
    ),
    Rule(
        "sharpen",
        re.compile(r"\b(sharp\w*|crisp\w*|de-?blur\w*|unblur\w*|less\s+blurry|in\s+focus|clearer|clarity|detail\w*)\b", re.I),
        "sharpen, sharper, crisper, deblur, less blurry, clearer, more detail",
    ),
]

_CLAUSE_SPLIT = re.compile(r"[,;.!?\n]+|\b(?:and then|then|and|also|after that|afterwards)\b", re.I)
# Clauses made only of these words carry no request ("please", "thanks", "for me").
_FILLER = set(
    "a an the it its this that these those my our your me us i we you please thanks thank can could would will "
    "just kindly photo picture image pic pics photos images one for to of with in on by bit little some more make "
    "look looks do is be so as too very really all of up".split()
)


@dataclasses.dataclass(frozen=True)
class Step:
    operation: str
    position: int


@dataclasses.dataclass
class Plan:
    steps: list[str]
    scale: float | None  # an explicit scale the user asked for, else None
    not_understood: list[str]


def parse(instruction: str) -> Plan:
    found: list[Step] = []
    not_understood: list[str] = []
    offset = 0
    for clause in _CLAUSE_SPLIT.split(instruction):
        clause = clause or ""
        start = instruction.find(clause, offset) if clause else offset
        offset = max(offset, start + len(clause))
        matches = [
            Step(rule.operation, start + m.start()) for rule in RULES for m in [rule.pattern.search(clause)] if m
        ]
        if matches:
            found.extend(matches)
        elif any(word not in _FILLER for word in re.findall(r"[a-z0-9']+", clause.lower())):
            not_understood.append(clause.strip())
    steps: list[str] = []
    for step in sorted(found, key=lambda s: s.position):
        if step.operation not in steps:
            steps.append(step.operation)
    return Plan(steps=steps, scale=_explicit_scale(instruction), not_understood=not_understood)


def _explicit_scale(instruction: str) -> float | None:
    match = _SCALE.search(instruction)
    if match:
        return float(match.group(1) or match.group(2))
    for word, scale in SCALE_WORDS.items():
        if re.search(rf"\b{word}\b", instruction, re.I):
            return float(scale)
    return None


def vocabulary() -> str:
    return "; ".join(f"{rule.operation}: {rule.examples}" for rule in RULES)
