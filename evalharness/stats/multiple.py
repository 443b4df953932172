"""Multiple comparisons: Holm's step-down adjustment of p-values.

Testing twenty adapters against the baseline at 5% each finds a "winner" by chance about
two times in three. Holm's method controls the chance of any false claim (the family-wise
error rate) at the chosen level, is never less powerful than Bonferroni, and needs no
assumption about how the tests depend on each other (they share the baseline's answers).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-adjusted p-values, in the input order.

    Sort ascending; the i-th smallest (0-based) is multiplied by ``m - i``; a running maximum
    keeps the order; values are capped at 1. Worked by hand for (0.01, 0.04, 0.03, 0.5):
    sorted 0.01, 0.03, 0.04, 0.5 times 4, 3, 2, 1 gives 0.04, 0.09, 0.08, 0.5; the running
    maximum makes 0.04, 0.09, 0.09, 0.5.

    >>> [round(p, 4) for p in holm([0.01, 0.04, 0.03, 0.5])]
    [0.04, 0.09, 0.09, 0.5]
    >>> holm([])
    []
    """
    p = np.asarray(p_values, dtype=np.float64)
    m = p.size
    if m == 0:
        return []
    order = np.argsort(p, kind="stable")
    adjusted = np.minimum(np.maximum.accumulate(p[order] * (m - np.arange(m))), 1.0)
    out = np.empty(m)
    out[order] = adjusted
    return [float(v) for v in out]
