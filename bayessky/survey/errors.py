"""The one exception of the survey package: a user error, printed by the CLI as one line."""

from __future__ import annotations

__all__ = ["SurveyError"]


class SurveyError(ValueError):
    """A wrong input, a refused output folder or an unusable cluster setting (one line, naming the
    flag). A ValueError, so ``bayessky`` prints it as one line with exit status 2."""
