"""A backend for the scale-out tests, registered in flashbulb.toml as `[models.NAME] backend =
"fault_backends:FaultBackend"`: it runs in a model worker like any model, and its prompt says what
to do there, so a test can make a worker crash, hang or run slowly through the real code path."""

from __future__ import annotations

import os
import time

from PIL import Image

from flashbulb.engine.types import ImageRequest, ImageResult, JobContext


class FaultBackend:
    def run(self, request: ImageRequest, job: JobContext) -> ImageResult:
        words = request.prompt.split()
        if words[:1] == ["abort"]:
            os.abort()  # a native crash: SIGABRT, as OpenCV's failed assertions end a process
        if words[:1] == ["sleep"]:
            deadline = time.monotonic() + float(words[1])
            while time.monotonic() < deadline:
                job.progress(1 - (deadline - time.monotonic()) / float(words[1]))
                time.sleep(0.05)
        # "unanswerable": a measurement no wire format can write (an answer that can't be built).
        quality = {"oops": {1, 2}} if words[:1] == ["unanswerable"] else {}
        if words[:1] == ["nan"]:  # what a measurement of a degenerate image can come to
            quality = {"noise": float("nan"), "scores": [float("inf"), 1.0]}
        text = f"done by pid {os.getpid()}, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}"  # the threads it was given
        return ImageResult(images=[Image.new("RGB", (8, 8), (200, 30, 30))], text=text, quality=quality)


class BrokenBackend:
    """A model whose worker can't load it (weights that fail to read, a driver that won't start)."""

    def __init__(self) -> None:
        raise RuntimeError("the weights could not be read")
