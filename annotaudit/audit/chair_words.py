"""Old path of `annotaudit.audit.chair.words`, kept importable for one release."""

import sys

from annotaudit.audit.chair import words as _module

sys.modules[__name__] = _module
