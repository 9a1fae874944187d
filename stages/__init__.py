"""The pipeline's stages, one module each, run by dvc.yaml as `python -m stages.<name>`.

That `python` is whichever comes first on PATH. Any but the project's (.venv, made by
`make setup`) lacks tuneforge and the pinned packages, and every stage would end in a
traceback (`No module named 'tuneforge'`): say so in one line instead.
"""
import importlib.util
import sys

if importlib.util.find_spec("tuneforge") is None:
    sys.exit(f"stages: {sys.executable} cannot import tuneforge, so it is not the project's Python: "
             "activate the virtualenv first (source .venv/bin/activate, after make setup), or run make repro")
