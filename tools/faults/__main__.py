"""python -m tools.faults: see tools/faults/__init__.py."""
import sys

from tools.faults.report import main

sys.exit(main())
