"""Old path of `annotaudit.audit.pope.run`, kept importable for one release."""

import sys

from annotaudit.audit.pope import run as _module

sys.modules[__name__] = _module
