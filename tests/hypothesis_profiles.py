"""Hypothesis profiles of the property suites, chosen with ``HYPOTHESIS_PROFILE``.

- ``ci`` (the default): 100 generated examples from a fixed seed, so every CI run tries
  the same examples (whatever the test's source says, unlike ``derandomize``, whose
  seed is a digest of it) and a failure reproduces with the same command;
- ``deep``: ten times more examples from a fresh random seed each run, by hand:
  ``HYPOTHESIS_PROFILE=deep scripts/test tests/integration/test_decommission_property.py``.

The profiles are applied by the tests that ask for them (``@profile_settings()`` and
``@profile_seed()``) and never loaded globally, so the other hypothesis tests keep their
own settings.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TypeVar

from hypothesis import HealthCheck, Phase, Verbosity, seed, settings

CI = "ci"
DEEP = "deep"
ENV = "HYPOTHESIS_PROFILE"
CI_SEED = 20261128
T = TypeVar("T")

_SLOW_WORLDS = [
    HealthCheck.function_scoped_fixture,
    HealthCheck.too_slow,
    HealthCheck.data_too_large,
    HealthCheck.large_base_example,
]

settings.register_profile(
    CI,
    max_examples=100,
    derandomize=False,  # the fixed seed instead: see profile_seed()
    database=None,
    deadline=None,
    print_blob=True,
    suppress_health_check=_SLOW_WORLDS,
    # Shrinking a world takes many more runs of it; on a failure CI reports the example
    # as found, and the same command reproduces it.
    phases=[Phase.explicit, Phase.generate],
)
settings.register_profile(
    DEEP,
    max_examples=1000,
    derandomize=False,
    deadline=None,
    print_blob=True,
    suppress_health_check=_SLOW_WORLDS,
    verbosity=Verbosity.normal,
)


def profile_name() -> str:
    """The profile asked for (``HYPOTHESIS_PROFILE``), ``ci`` when unset or unknown to
    these suites."""
    name = os.environ.get(ENV, CI)
    return name if name in (CI, DEEP) else CI


def profile_settings() -> settings:
    """The settings of the profile asked for, to decorate a test with."""
    return settings.get_profile(profile_name())


def profile_seed() -> Callable[[T], T]:
    """The ci profile's fixed seed, as a decorator (none for the deep profile)."""
    if profile_name() == CI:
        return seed(CI_SEED)  # type: ignore[return-value]
    return lambda test: test
