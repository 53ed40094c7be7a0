"""Old path of `annotaudit.audit.pope.formats`, kept importable for one release."""

import sys

from annotaudit.audit.pope import formats as _module

sys.modules[__name__] = _module
