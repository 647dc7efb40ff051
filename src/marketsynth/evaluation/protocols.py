"""The settings of the post-hoc classifiers (``Protocol``), shared by ``evaluate`` and ``diagnose``.

See ``metrics``' module doc for what each protocol means and why the default one trains as it does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from marketsynth.errors import ConfigError
from marketsynth.evaluation import classifiers


@dataclass(frozen=True)
class Protocol:
    """How the discriminative and predictive scores are computed (see ``metrics``' module doc)."""

    name: str
    discriminative_iterations: int
    predictive_iterations: int
    batch_size: int = 128
    lr: float = 1e-3
    patience: int | None = None  # None: fixed iterations, as in the paper
    check_every: int = 50
    minmax_raw: bool = False  # True: min-max scaled raw OHLCV columns; False: standardised features
    predict_from_all_columns: bool = False  # False: from the other columns (the paper)
    purged: bool = False  # True: discriminators test on windows sharing no bar with their training windows

    def discriminative_score(self, real: np.ndarray, synthetic: np.ndarray, *, hidden: int | None = None,
                             columns: Sequence[int] | None = None, seed: int = 0) -> float:
        """``classifiers.discriminative_score`` with this protocol's settings on windows ``[n, L, F]`` in time
        order (``purged``: no test window shares a bar with a training window; see ``overlap`` there)."""
        return classifiers.discriminative_score(
            real, synthetic, hidden=hidden, columns=columns, iterations=self.discriminative_iterations,
            batch_size=self.batch_size, lr=self.lr, patience=self.patience, check_every=self.check_every,
            overlap=np.shape(real)[1] - 1 if self.purged else None, seed=seed)


PROTOCOLS = {
    "default": Protocol("default", 600, 600, batch_size=512, lr=1e-2, patience=3, predict_from_all_columns=True,
                        purged=True),
    "timegan": Protocol("timegan", 2000, 5000, minmax_raw=True),
}


def resolve_protocol(protocol: str | Protocol) -> Protocol:
    """A ``Protocol`` as given, or the one of ``PROTOCOLS`` named ``protocol`` (ConfigError if there is none)."""
    if isinstance(protocol, Protocol):
        return protocol
    if protocol not in PROTOCOLS:
        raise ConfigError(f"unknown protocol '{protocol}'; use one of {', '.join(PROTOCOLS)}")
    return PROTOCOLS[protocol]
