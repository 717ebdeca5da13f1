"""``python -m tasktrace`` is ``tasktrace-admin``."""

import sys

from tasktrace.admin import main

sys.exit(main())
