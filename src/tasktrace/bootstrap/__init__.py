"""The directory the launcher puts first on ``PYTHONPATH`` so Python runs our sitecustomize.

Only ``sitecustomize.py`` lives here (plus this file): everything in this directory is
importable as a top-level module in the instrumented program.
"""

import os

#: The directory to put on ``PYTHONPATH``.
BOOTSTRAP_DIR = os.path.dirname(os.path.abspath(__file__))
