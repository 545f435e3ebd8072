"""What a diffusion worker imports before it loads its pipeline (torch, diffusers, transformers:
~4.5 s on a 2-core EPYC), imported once by the process its workers fork from
(`ModelEntry.worker_imports`)."""

import importlib

for _name in ("flashbulb.engine.backends.diffusion.backend", "torch", "diffusers", "transformers"):
    try:
        importlib.import_module(_name)
    except Exception:  # noqa: BLE001 - a broken install fails in the worker, with its own error; here it would stop every model's
        pass
