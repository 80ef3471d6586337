"""The variables through which a rehearsal tells ``zerodown.openfeature`` an instance's
cohort and flags (a leaf: the tooling reads these names without importing OpenFeature)."""

from __future__ import annotations

COHORT_VARIABLE = "ZERODOWN_COHORT"
FLAGS_VARIABLE = "ZERODOWN_FLAGS"
COHORTS = ("stable", "canary")
