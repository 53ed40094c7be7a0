"""Old path of `annotaudit.audit.pope.labels`, kept importable for one release."""

import sys

from annotaudit.audit.pope import labels as _module

sys.modules[__name__] = _module
