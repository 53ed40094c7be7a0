"""Old path of `annotaudit.audit.chair.run`, kept importable for one release."""

import sys

from annotaudit.audit.chair import run as _module

sys.modules[__name__] = _module
