"""Free-text instruction -> plan of photo operations with parameters, for `flashbulb-photo`.

The instruction is split into clauses ("restore it, then give it a blue studio background"); each
clause must match at least one rule, so a request we cannot carry out is answered, never silently
skipped. Within a clause, a headshot takes the background and lighting words as its own options,
and a background takes its colour. To teach the model a new edit: add a Rule here and an operation
in the backend.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Collection

SCALE_WORDS = {"double": 2, "twice": 2, "triple": 3, "quadruple": 4}
_SCALE = re.compile(r"(?:\b(\d+(?:\.\d+)?)\s*(?:x|×|times)(?!\w))|(?:(?:\bx|×)\s*(\d+(?:\.\d+)?)\b)", re.I)
_RATIO = re.compile(r"\b(\d{1,3})\s*:\s*(\d{1,3})\b")  # any sides: a 0 or an extreme ratio is refused, not replaced
RATIO_WORDS = {"square": "1:1", "portrait": "4:5", "landscape": "3:2", "widescreen": "16:9", "vertical": "9:16"}
COLOURS = {
    "white": (0.96, 0.96, 0.96),
    "black": (0.05, 0.05, 0.05),
    "grey": (0.5, 0.5, 0.52),
    "gray": (0.5, 0.5, 0.52),
    "blue": (0.22, 0.38, 0.62),
    "navy": (0.10, 0.16, 0.32),
    "light blue": (0.62, 0.76, 0.90),
    "red": (0.70, 0.16, 0.14),
    "green": (0.24, 0.50, 0.30),
    "yellow": (0.92, 0.80, 0.30),
    "orange": (0.90, 0.52, 0.18),
    "purple": (0.45, 0.26, 0.58),
    "pink": (0.92, 0.66, 0.74),
    "beige": (0.85, 0.78, 0.66),
    "cream": (0.94, 0.90, 0.80),
    "brown": (0.42, 0.30, 0.20),
    "teal": (0.12, 0.48, 0.50),
}
_COLOUR = re.compile(r"#([0-9a-f]{6})\b|\b(" + "|".join(sorted(COLOURS, key=len, reverse=True)) + r")\b", re.I)


@dataclasses.dataclass(frozen=True)
class Operation:
    name: str
    params: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class Plan:
    operations: list[Operation]
    not_understood: list[str]
    ignored: list[str] = dataclasses.field(default_factory=list)  # style and camera words: acknowledged, no effect

    @property
    def names(self) -> list[str]:
        return [op.name for op in self.operations]


# ---- parameter readers: clause text -> options ------------------------------------------------


def _amount(clause: str) -> float:
    if re.search(r"\b(slightly|a (little )?bit|a little|subtle|subtly|touch)\b", clause, re.I):
        return 0.5
    if re.search(r"\b(much|a lot|very|strongly|way|really|heavily)\b", clause, re.I):
        return 1.6
    return 1.0


def _percent(clause: str) -> float | None:
    match = re.search(r"(\d+(?:\.\d+)?)\s*%", clause)
    return float(match.group(1)) / 100 if match else None


def colour_of(clause: str) -> tuple[float, float, float] | None:
    match = _COLOUR.search(clause)
    if not match:
        return None
    if match.group(1):
        value = int(match.group(1), 16)
        return ((value >> 16) / 255, ((value >> 8) & 255) / 255, (value & 255) / 255)
    return COLOURS[match.group(2).lower()]


def ratio_of(clause: str) -> str | None:
    match = _RATIO.search(clause)
    if match:
        return f"{match.group(1)}:{match.group(2)}"
    for word, ratio in RATIO_WORDS.items():
        if re.search(rf"\b{word}\b", clause, re.I):
            return ratio
    return None


def scale_of(text: str) -> float | None:
    match = _SCALE.search(text)
    if match:
        return float(match.group(1) or match.group(2))
    for word, scale in SCALE_WORDS.items():
        if re.search(rf"\b{word}\b", text, re.I):
            return float(scale)
    return None


# Words a background clause may hold besides a mode or a colour; anything else names a scene
# ("a beach", "a bookshelf") that flashbulb-photo can't paint: that clause is not understood.
_BACKGROUND_WORDS = set(
    [
        "background",
        "backgrounds",
        "backdrop",
        "bg",
        "replace",
        "replaced",
        "swap",
        "switch",
        "new",
        "plain",
        "solid",
        "colour",
        "color",
        "coloured",
        "colored",
        "behind",
        "around",
        "her",
        "him",
        "them",
        "me",
        "person",
        "subject",
        "studio",
        "gradient",
        "seamless",
        "professional",
        "clean",
        "neutral",
        "soft",
        "light",
        "dark",
    ]
)


def names_a_scene(clause: str) -> bool:
    """Whether a background clause asks for something other than the modes and colours we have."""
    text = _COLOUR.sub(" ", clause)
    words = [w for w in re.findall(r"[a-z0-9']+", text.lower()) if w not in _FILLER and w not in _BACKGROUND_WORDS]
    known = re.search(
        r"\b(remov\w*|transparent|delet\w*|get rid|cut\s*out|erase\w*|without|second|other|another|2nd|attached"
        r"|blur\w*|bokeh|defocus\w*|focus|shallow|depth|office|workplace|corporate|image|photo|place)\b",
        text,
        re.I,
    )
    return bool(words) and not known


# "upscale to 3000 px wide", "to 4K": the long side asked for (4K: 3840, UHD's width).
_TARGET = re.compile(
    r"\b(\d{3,5})\s*(?:px|pixels?)\s*(?:wide|width|across|long)?\b|\b(\d{3,5})\s*(?:wide|width)\b|\b(4k|uhd|2k|full\s*hd|1080p)\b",
    re.I,
)
_NAMED_SIDES = {"4k": 3840, "uhd": 3840, "2k": 2048, "full hd": 1920, "fullhd": 1920, "1080p": 1920}


def width_of(text: str) -> int | None:
    """The long side an upscale should reach, when the instruction names one instead of a factor."""
    if re.search(r"\b(resiz\w*|shrink\w*|smaller|thumbnail)\b", text, re.I):
        return None  # a resize names its own size
    match = _TARGET.search(text)
    if not match:
        return None
    if match.group(3):
        return _NAMED_SIDES[re.sub(r"\s+", " ", match.group(3).lower())]
    return int(match.group(1) or match.group(2))


_EXACT = re.compile(r"\b(\d{2,5})\s*[x×]\s*(\d{2,5})\b")


def size_of(text: str) -> tuple[int, int] | None:
    """The exact size an upscale should reach ("upscale to 800x600"), when the instruction names one."""
    if re.search(r"\b(resiz\w*|shrink\w*|smaller|thumbnail)\b", text, re.I):
        return None  # a resize names its own size
    match = _EXACT.search(text)
    return (int(match.group(1)), int(match.group(2))) if match else None


def background_params(clause: str) -> dict:
    colour = colour_of(clause)
    if re.search(r"\b(remov\w*|transparent|delet\w*|get rid|cut\s*out|no background|erase\w*|without)\b", clause, re.I):
        return {"mode": "remove"}
    if re.search(r"\b(second|other|another|2nd|attached|new photo|this (photo|image|place)|image 2|photo 2)\b", clause, re.I):
        return {"mode": "image"}
    if re.search(r"\b(blur\w*|bokeh|defocus\w*|out of focus|shallow depth)\b", clause, re.I):
        return {"mode": "office" if re.search(r"\boffice\b", clause, re.I) else "blur"}
    if re.search(r"\boffice|workplace|corporate\b", clause, re.I):
        return {"mode": "office"}
    if re.search(r"\b(studio|gradient|seamless|backdrop|professional|plain|clean|neutral)\b", clause, re.I) or colour is None:
        return {"mode": "studio", "colour": colour} if colour else {"mode": "studio"}
    return {"mode": "colour", "colour": colour}


def relight_params(clause: str) -> dict:
    setup = None
    for word, name in [
        ("rembrandt", "rembrandt"),
        ("loop", "loop"),
        ("butterfly", "butterfly"),
        ("paramount", "butterfly"),
        ("split", "split"),
        ("rim", "rim"),
        ("back\\s*-?light\\w*", "rim"),
        ("edge light\\w*", "rim"),
    ]:
        if re.search(rf"\b{word}\b", clause, re.I):
            setup = name
            break
    side = "right" if re.search(r"\bright\b", clause, re.I) else "left"
    moods = [
        mood
        for mood, pattern in [
            ("warm", r"warm\w*|golden"),
            ("cool", r"cool\w*|cold\w*"),
            ("softer", r"soft\w*|flatter\w*|gentle"),
            ("dramatic", r"dramatic\w*|moody|contrasty"),
        ]
        if re.search(rf"\b({pattern})\b", clause, re.I)
    ]
    if setup is None and not moods:
        setup = "loop"  # "better lighting": the flattering default
    return {"setup": setup, "side": side, "moods": moods, "strength": min(_amount(clause), 1.3)}


def headshot_params(clause: str) -> dict:
    params: dict = {
        "background": background_params(clause)
        if re.search(r"\b(background|backdrop|office|studio|blur\w*|bokeh)\b", clause, re.I)
        else {"mode": "studio"}
    }
    if ratio_of(clause):
        params["ratio"] = ratio_of(clause)
    return params


def adjust_params(clause: str) -> dict:
    amount, percent = _amount(clause), _percent(clause)
    params: dict = {}
    if re.search(
        r"\b(bright\w*|lighter|exposure|expose\w*|darker|darken\w*|dim\w*)\b|[+-]\d+(\.\d+)?\s*(stops?|ev)\b", clause, re.I
    ):
        stops = re.search(r"([+-]?\d+(?:\.\d+)?)\s*(stops?|ev)\b", clause, re.I)
        direction = -1 if re.search(r"\b(darker|darken\w*|dim\w*|less bright|overexposed|reduce)\b", clause, re.I) else 1
        params["exposure"] = float(stops.group(1)) if stops else direction * 0.7 * amount
    if re.search(r"\bcontrast\w*|\bpunch\w*|\bflat\w*", clause, re.I):
        less = re.search(r"\b(less|lower|reduce\w*|flat\w*|soft\w*)\b", clause, re.I)
        params["contrast"] = (-1 if less else 1) * (percent if percent is not None else 0.35 * amount)
    if re.search(r"\b(black and white|monochrome|gr[ae]yscale|b&w)\b", clause, re.I):
        params["saturation"] = 0.0
    elif re.search(r"\b(saturat\w*|desaturat\w*|vivid|vibrant|colou?rful|muted|punchy colou?rs?|colou?rs? pop)\b", clause, re.I):
        less = re.search(r"\b(less|lower|reduce\w*|desaturat\w*|muted)\b", clause, re.I)
        change = percent if percent is not None else 0.35 * amount
        params["saturation"] = max(0.0, 1 - change) if less else 1 + change
    if re.search(r"\bwarmth|temperature\b", clause, re.I):
        params["warmth"] = (
            (-1 if re.search(r"\b(less|lower|reduce\w*|cool\w*)\b", clause, re.I) else 1) * (percent or 0.5) * amount
        )
    if re.search(r"\bcrop\w*\b", clause, re.I):
        params["crop"] = ratio_of(clause) or "1:1"
    resize = re.search(r"\b(resiz\w*|scale (it )?(down|to)|shrink\w*|make it smaller|smaller|thumbnail)\b", clause, re.I)
    if resize:
        size = re.search(r"\b(\d{1,5})\s*[x×]\s*(\d{1,5})\b", clause)  # "0x0" is refused when applied, not a 50% resize
        width = re.search(r"\b(\d{2,5})\s*(px|pixels?)?\s*(wide|width)\b|\bwidth (of )?(\d{2,5})", clause, re.I)
        height = re.search(r"\b(\d{2,5})\s*(px|pixels?)?\s*(tall|high|height)\b|\bheight (of )?(\d{2,5})", clause, re.I)
        if size:
            params["resize"] = {"width": int(size.group(1)), "height": int(size.group(2))}
        elif width:
            params["resize"] = {"width": int(width.group(1) or width.group(5))}
        elif height:
            params["resize"] = {"height": int(height.group(1) or height.group(5))}
        else:
            params["resize"] = {"percent": round((percent if percent is not None else 0.5) * 100, 3)}
    return params


@dataclasses.dataclass(frozen=True)
class Rule:
    operation: str
    pattern: re.Pattern[str]
    read: Callable[[str], dict]
    examples: str  # the words users write for it, listed in the model's description


def _rx(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern, re.I)


RULES = [
    Rule(
        "headshot",
        _rx(
            r"\b(head\s*-?shot\w*|linkedin|profile\s+(photo|picture|pic)|passport\s+photo|corporate\s+(photo|portrait)"
            r"|professional\s+(photo|portrait|headshot|picture))"
        ),
        headshot_params,
        "headshot, LinkedIn photo, profile picture, professional portrait (+ office/studio/blur background, 1:1 or 4:5)",
    ),
    Rule(
        "background",
        _rx(r"\b(back\s*grounds?|backdrop|bg)\b|\bcut\s*(me|him|her|them|it)?\s*out\b"),
        background_params,
        "remove/transparent background, blue (any colour or #hex) background, studio, office, blur/bokeh, the second image as background",
    ),
    Rule(
        "restore",
        _rx(
            r"\b(restor\w*|repair\w*|fix\w*|enhanc\w*|improv\w*|clean\w*\s*up|old\s+(photo|picture|image)"
            r"|de-?nois\w*|noise|grain\w*|remaster\w*|better|quality|scratch\w*|dust\w*|faded)\b"
        ),
        lambda clause: {
            "enlarge": bool(
                re.search(
                    r"\b(restor\w*|old\s+(photo|picture|image)|remaster\w*|enhanc\w*|improv\w*"
                    r"|better|quality)\b",
                    clause,
                    re.I,
                )
            )
        },
        "restore, repair, fix, enhance, clean up, denoise, remove grain/scratches/dust, faded",
    ),
    Rule(
        "upscale",
        _rx(
            r"\b(upscal\w*|upsampl\w*|enlarg\w*|super[\s-]?res\w*|(higher|increase\w*|more)\s+resolution"
            r"|bigger|larger|double|twice|triple|quadruple|hd|4k|uhd|2k)\b|" + _SCALE.pattern
        ),
        lambda clause: {},
        "upscale, enlarge, super-resolution, higher resolution, 2x/x4/×3, double",
    ),
    Rule(
        "sharpen",
        _rx(r"\b(sharp\w*|crisp\w*|de-?blur\w*|unblur\w*|less\s+blurry|in\s+focus|clearer|clarity|detail\w*)\b"),
        lambda clause: {"amount": 0.6 * _amount(clause) * (1.5 if re.search(r"blur", clause, re.I) else 1)},
        "sharpen, crisper, deblur, less blurry, more detail",
    ),
    Rule(
        "relight",
        _rx(
            r"\b(light|lighting|lit|relight\w*|rembrandt|loop|butterfly|paramount|split|rim|back\s*-?light\w*"
            r"|warm\w*|cool\w*|cold\w*|golden|soft\w*|flatter\w*|dramatic\w*|moody)\b"
        ),
        relight_params,
        "Rembrandt/loop/butterfly/split/rim lighting (from the left/right), warmer, cooler, softer, dramatic",
    ),
    Rule(
        "adjust",
        _rx(
            r"\b(bright\w*|lighter|darker|darken\w*|exposure|expose\w*|contrast\w*|saturat\w*|desaturat\w*|vivid|vibrant"
            r"|muted|black and white|monochrome|gr[ae]yscale|b&w|warmth|temperature|crop\w*|resiz\w*|shrink\w*|smaller|thumbnail)\b"
            r"|[+-]\d+(\.\d+)?\s*(stops?|ev)\b"
        ),
        adjust_params,
        "brighter/darker/+1 stop, more/less contrast, saturation/vivid/black and white, warmth, crop to 16:9/square, resize to 800px wide/800x600/50%",
    ),
]
_BY_NAME = {rule.operation: rule for rule in RULES}
# A clause that asks for one of these keeps only it: its words are that operation's options.
_ABSORBS = {
    "headshot": {"background", "relight", "adjust", "restore", "upscale"},
    "background": {"relight", "adjust"},
    "relight": {"restore"},  # "better lighting" is about light, not restoration
}

# Words a generative prompt carries that change nothing in an edit of this photo ("shot on a Sony a7
# IV, 85mm, f/1.8"): listed as ignored in the answer rather than refusing the whole call.
_STYLE = re.compile(
    r"\b(shot|taken|captured)\s+(on|with)\b|\b(canon|nikon|sony|fuji\w*|leica|hasselblad|iphone|pixel|a7\w*|eos|dslr|mirrorless"
    r"|lens|prime|\d+\s*mm|f/?\d+(\.\d+)?|iso\s*\d+|cinematic|photorealistic|hyper-?realistic|realistic|8k|award[- ]winning"
    r"|masterpiece|high quality|ultra detailed|trending|film (still|look)|kodak|portra|35mm film)\b",
    re.I,
)

_CLAUSE_SPLIT = re.compile(r"[,;!?\n]+|\.(?!\d)|\b(?:and then|then|and|also|after that|afterwards|plus)\b", re.I)
_PROTECTED = {"black and white": "monochrome", "b & w": "monochrome"}
# Clauses made only of these words carry no request ("please", "thanks", "for me").
_FILLER = set(
    [
        "a",
        "an",
        "the",
        "it",
        "its",
        "this",
        "that",
        "these",
        "those",
        "my",
        "our",
        "your",
        "me",
        "us",
        "i",
        "we",
        "you",
        "please",
        "thanks",
        "thank",
        "can",
        "could",
        "would",
        "will",
        "just",
        "kindly",
        "photo",
        "picture",
        "image",
        "pic",
        "pics",
        "photos",
        "images",
        "one",
        "for",
        "to",
        "of",
        "with",
        "in",
        "on",
        "by",
        "bit",
        "little",
        "some",
        "more",
        "make",
        "look",
        "looks",
        "do",
        "is",
        "be",
        "so",
        "as",
        "too",
        "very",
        "really",
        "all",
        "up",
        "give",
        "put",
        "use",
        "add",
        "set",
        "change",
        "turn",
    ]
)


# What the studio offers to click before a user types: one of each kind of edit, each understood
# whole (tests/test_photo_instructions.py parses every one).
EXAMPLES = (
    "restore this old photo",
    "remove the noise and scratches",
    "make it brighter",
    "make it black and white",
    "give it a white studio background",
    "remove the background",
    "rembrandt lighting",
    "professional LinkedIn headshot",
    "crop to 16:9",
    "upscale 2x",
)


def parse(instruction: str) -> Plan:
    text = instruction
    for phrase, word in _PROTECTED.items():
        text = re.sub(phrase, word, text, flags=re.I)
    operations: list[Operation] = []
    not_understood: list[str] = []
    ignored: list[str] = []
    for clause in _CLAUSE_SPLIT.split(text):
        clause = (clause or "").strip()
        if _STYLE.search(clause) and _only_filler(_STYLE.sub(" ", clause), also=_MODEL_WORDS):
            ignored.append(clause)
            continue
        matched = [rule.operation for rule in RULES if rule.pattern.search(clause)]
        scene = _BY_NAME["headshot"].pattern.sub(" ", clause) if "headshot" in matched else clause
        if _BY_NAME["background"].pattern.search(scene) and names_a_scene(scene):
            not_understood.append(clause)  # a scene to paint, never a studio backdrop in its place
            continue
        for winner, absorbed in _ABSORBS.items():
            if winner in matched:
                matched = [name for name in matched if name not in absorbed]
        if "relight" in matched and "adjust" in matched and not re.search(r"\blight(ing)?\b|\blit\b", clause, re.I):
            matched.remove("relight")  # "brighter and warmer" is a colour adjustment, not a lighting setup
        if not matched and ratio_of(clause) and _only_filler(_RATIO.sub("", clause)):
            # A bare "4:5" after a headshot frames it; anywhere else it is a crop.
            if operations and operations[-1].name == "headshot":
                operations[-1].params["ratio"] = ratio_of(clause)
            else:
                operations.append(Operation("adjust", {"crop": ratio_of(clause)}))
            continue
        if not matched:
            if not _only_filler(clause):
                not_understood.append(clause)
            continue
        operations.extend(Operation(name, _BY_NAME[name].read(clause)) for name in matched)
    return Plan(_merge(operations, scale_of(text), width_of(text), size_of(text)), not_understood, ignored)


_MODEL_WORDS = {"i", "ii", "iii", "iv", "v", "mark", "mk", "pro", "max", "mini", "ultra", "plus", "r", "s", "z"}


def _only_filler(clause: str, also: Collection[str] = frozenset()) -> bool:
    return all(word in _FILLER or word in also or word.isdigit() for word in re.findall(r"[a-z0-9']+", clause.lower()))


def _merge(
    operations: list[Operation], scale: float | None, width: int | None = None, size: tuple[int, int] | None = None
) -> list[Operation]:
    """One super-resolution pass however many words asked for it; the explicit scale (or long side)
    goes to it. A restore that only cleans (denoise, scratches, colour cast) doesn't enlarge."""
    result: list[Operation] = []
    for op in operations:
        if op.name in ("restore", "upscale"):
            earlier = next((r for r in result if r.name in ("restore", "upscale")), None)
            if earlier is not None:
                if op.name == "restore" and earlier.name == "upscale":
                    result[result.index(earlier)] = Operation("restore", earlier.params)
                continue
            op = Operation(op.name, {"scale": scale, "long_side": width, "size": size, "enlarge": op.params.get("enlarge", True)})
        result.append(op)
    return result


def vocabulary() -> str:
    return "; ".join(f"{rule.operation}: {rule.examples}" for rule in RULES)
