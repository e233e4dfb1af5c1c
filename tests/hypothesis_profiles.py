"""Hypothesis profiles of the property suites, chosen with ``HYPOTHESIS_PROFILE``.

- ``ci`` (the default): at least 100 examples, derandomized, so every CI run tries the
  same examples and a failure reproduces with the same command;
- ``deep``: ten times more examples from a fresh random seed each run, by hand:
  ``HYPOTHESIS_PROFILE=deep scripts/test tests/integration/test_decommission_property.py``.

The profiles are applied by the tests that ask for them (``@profile_settings()``) and
never loaded globally, so the other hypothesis tests keep their own settings.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, Phase, Verbosity, settings

CI = "ci"
DEEP = "deep"
ENV = "HYPOTHESIS_PROFILE"

_SLOW_WORLDS = [
    HealthCheck.function_scoped_fixture,
    HealthCheck.too_slow,
    HealthCheck.data_too_large,
    HealthCheck.large_base_example,
]

settings.register_profile(
    CI,
    max_examples=100,
    derandomize=True,
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
