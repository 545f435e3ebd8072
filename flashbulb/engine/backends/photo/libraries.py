"""What a flashbulb-photo worker imports before it loads its models (~1 s on a 2-core EPYC),
imported once by the process its workers fork from (`ModelEntry.worker_imports`). Not openvino or onnxruntime:
their imports start threads (measured in /proc/self/task), and a process with threads must not fork
(both load in ~0.1 s)."""

import importlib

for _name in ("flashbulb.engine.backends.photo.backend", "cv2", "mediapipe", "dlib"):
    try:
        importlib.import_module(_name)
    except Exception:  # noqa: BLE001 - a broken install fails in the worker, with its own error; here it would stop every model's
        pass
