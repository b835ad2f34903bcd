"""Racing: statistical elimination of candidates evaluated on shared instances (no Ray here).

:mod:`~autometa.racing.stats` holds the tests, :mod:`~autometa.racing.race` one race, and
:mod:`~autometa.racing.sampling` the irace-style model that samples around elites.
"""

from autometa.racing.race import Race, RaceSettings
from autometa.racing.stats import TESTS, worse_than_best

__all__ = ["TESTS", "Race", "RaceSettings", "worse_than_best"]
