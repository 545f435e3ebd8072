"""What a model found in an account's image, kept by a hash of the pixels for its next check of them.

The same pixels are checked again and again: a batch's items on one photo, a retried call, the
next turn on the same photo, and an edit that gives the same output. A check by a packaged model
costs 5-65 ms of CPU (safety ~16 ms whatever the size; faces and identity ~65 ms at 256 px),
hashing ~1.5 ms a megapixel (measured). Kept per account: a check answered from memory is faster
(and its timing is in the answer), which must not tell anyone that another account sent an image.
"""

from __future__ import annotations

import collections
import functools
import hashlib
import threading
from collections.abc import Callable
from typing import TypeVar

import numpy as np

T = TypeVar("T")


def by_pixels(size: int) -> Callable[[Callable[[np.ndarray], T]], Callable[[np.ndarray, int | None], T]]:
    """Decorate `find(image)` into `find(image, owner)`: its results for the last `size` images are
    kept and given again for the same pixels (shape, type and every value) of the same owner (an
    account id; None: not kept). They are shared: callers must not change them."""

    def decorate(find: Callable[[np.ndarray], T]) -> Callable[[np.ndarray, int | None], T]:
        found: collections.OrderedDict[bytes, T] = collections.OrderedDict()
        lock = threading.Lock()

        @functools.wraps(find)
        def remembered(image: np.ndarray, owner: int | None) -> T:
            image = np.ascontiguousarray(image)
            if owner is None:
                return find(image)
            key = hashlib.sha256(f"{owner} {image.shape} {image.dtype}".encode() + image.data).digest()
            with lock:
                if key in found:
                    found.move_to_end(key)
                    return found[key]
            result = find(image)  # outside the lock: the models are safe to share between threads
            with lock:
                found[key] = result
                if len(found) > size:
                    found.popitem(last=False)
            return result

        return remembered

    return decorate
