"""Identity on every result: is the person in the output the person in the photo sent?"""

from __future__ import annotations

import numpy as np

from flashbulb.vision import identity


class Subject:
    """The people in the photo the edit started from, measured once."""

    def __init__(self, rgb: np.ndarray):
        self.embeddings = identity.embeddings(rgb)

    def compare(self, output_rgb: np.ndarray) -> dict[str, object]:
        """Per input face (largest first): the distance to the closest output face, None if it is gone."""
        found = identity.embeddings(output_rgb)
        distances = [None if d is None else round(d, 3) for d in (identity.nearest(e, found) for e in self.embeddings)]
        main = distances[0] if distances else None
        return {
            "faces_in": len(self.embeddings),
            "faces_out": len(found),
            "identity_distance": distances,
            "identity_threshold": identity.THRESHOLD,
            # No face to keep is no risk; a main face that vanished or changed is.
            "same_person": not self.embeddings or (main is not None and main < identity.THRESHOLD),
        }
