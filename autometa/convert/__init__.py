"""Converters between autometa spaces and other libraries' spaces.

Every target has ``to_<target>(space)``; where a searcher consumes the target,
``decode_<target>(space, native)`` turns what that library suggests back into
flat autometa values. A converter raises :class:`ValueError` naming the
parameter when the target cannot express something.

========================= ======================= ===========================
target                    module                   needs
========================= ======================= ===========================
Ray Tune ``param_space``  ``autometa.convert.tune``        ray
hyperopt space            ``autometa.convert.hyperopt``    hyperopt
``ConfigurationSpace``    ``autometa.convert.configspace`` ConfigSpace
NNI ``search_space.json`` ``autometa.convert.nni``         (none)
autometa YAML/JSON        ``autometa.convert.document``    (none)
========================= ======================= ===========================

Functions are re-exported here lazily so that importing this package loads
none of those libraries.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "to_tune": "autometa.convert.tune", "from_tune": "autometa.convert.tune",
    "to_hyperopt": "autometa.convert.hyperopt", "decode_hyperopt": "autometa.convert.hyperopt",
    "to_configspace": "autometa.convert.configspace",
    "from_configspace": "autometa.convert.configspace",
    "decode_configspace": "autometa.convert.configspace",
    "to_configspace_json": "autometa.convert.configspace",
    "to_nni": "autometa.convert.nni",
    "to_document": "autometa.convert.document", "dump_document": "autometa.convert.document",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'autometa.convert' has no attribute {name!r}")
