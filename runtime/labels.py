"""Expression class names: the shipped label table and the synonyms users and other data sets write for them."""
from __future__ import annotations

# The seed's (RAF-DB) order: the shipped model's output order.
LABELS_7 = ["Surprise", "Fear", "Disgust", "Happiness", "Sadness", "Anger", "Neutral"]
# AffectNet and FER+ also annotate contempt; an 8-class model appends it.
LABELS_8 = LABELS_7 + ["Contempt"]

_ALIASES = {
    "surprise": "Surprise", "surprised": "Surprise",
    "fear": "Fear", "fearful": "Fear", "afraid": "Fear", "scared": "Fear",
    "disgust": "Disgust", "disgusted": "Disgust",
    "happiness": "Happiness", "happy": "Happiness", "joy": "Happiness",
    "sadness": "Sadness", "sad": "Sadness",
    "anger": "Anger", "angry": "Anger",
    "neutral": "Neutral", "calm": "Neutral",
    "contempt": "Contempt", "contemptuous": "Contempt",
}


def canonical_label(name: str) -> str:
    """Map a user's class name (case-insensitive, e.g. 'happy', 'Angry') to the table's name."""
    key = name.strip().lower()
    if key not in _ALIASES:
        raise ValueError(
            f"unknown expression class {name!r}; use one of {sorted(set(_ALIASES))}")
    return _ALIASES[key]


def known_label(name: str) -> bool:
    """Whether `canonical_label` knows `name`."""
    return name.strip().lower() in _ALIASES


def index_map(source_names: list[str], labels: list[str]) -> list[int]:
    """For each source class name, its index in `labels`, or -1 when the table drops it."""
    out = []
    for name in source_names:
        canon = _ALIASES.get(name.strip().lower())
        out.append(labels.index(canon) if canon in labels else -1)
    return out
