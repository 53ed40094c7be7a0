"""Old path of `annotaudit.audit.pope.build`, kept importable for one release."""

import sys

from annotaudit.audit.pope import build as _module

sys.modules[__name__] = _module
