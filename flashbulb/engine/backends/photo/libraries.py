"""What a flashbulb-photo worker imports before it loads its models (~1 s on a 2-core EPYC),
imported once by the process its workers fork from (`ModelEntry.worker_imports`). Not openvino or
onnxruntime: their imports start threads (measured in /proc/self/task), and a process with threads
must not fork (both load in ~0.1 s)."""

from flashbulb.engine.backends import import_each

import_each("flashbulb.engine.backends.photo.backend", "cv2", "mediapipe", "dlib")
