"""`flashbulb-photo`: offline photo edits on CPU from small packaged models, each result measured.

instructions.py  free text -> plan of operations        canvas.py    the image being edited
restore.py       dust, noise, colour, Real-ESRGAN       background.py  remove / replace
relight.py       lighting setups from the face mesh     headshot.py  selfie -> profile photo
adjust.py        exposure, contrast, colour, crop, size  quality.py   identity check
backend.py       runs a plan, measures, guards identity and safety
"""

from flashbulb.engine.backends.photo.backend import DESCRIPTION, PhotoBackend

__all__ = ["DESCRIPTION", "PhotoBackend"]
