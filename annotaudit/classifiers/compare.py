"""Old path of `annotaudit.classifiers.label_sources`, kept importable for one release."""

import sys

from annotaudit.classifiers import label_sources as _module

_module.compare = _module.train_label_sources
sys.modules[__name__] = _module
