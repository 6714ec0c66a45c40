"""The label table every loader maps into, and name matching for user data (defined once in `runtime.labels`)."""
from __future__ import annotations

from runtime.labels import LABELS_7, LABELS_8, canonical_label, index_map

__all__ = ["LABELS_7", "LABELS_8", "canonical_label", "index_map", "labels_for"]


def labels_for(num_classes: int) -> list[str]:
    """The label table for a 7- or 8-class model."""
    if num_classes == 7:
        return list(LABELS_7)
    if num_classes == 8:
        return list(LABELS_8)
    raise ValueError(f"num_classes must be 7 or 8, got {num_classes}")
