"""What a diffusion worker imports before it loads its pipeline (torch, diffusers, transformers:
~4.5 s on a 2-core EPYC), imported once by the process its workers fork from
(`ModelEntry.worker_imports`)."""

from flashbulb.engine.backends import import_each

import_each("flashbulb.engine.backends.diffusion.backend", "torch", "diffusers", "transformers")
