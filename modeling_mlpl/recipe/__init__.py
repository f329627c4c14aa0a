"""The staged recipe (icefall-style, resumable): configuration and steps (:mod:`.recipe`), the stage-4 rows
as data (:mod:`.variants`), the step scheduler (:mod:`.scheduler`), the forked script runner
(:mod:`.script_runner`) and the results report (:mod:`.report`)."""

from .recipe import Recipe, RecipeConfig, RecipeError

__all__ = ["Recipe", "RecipeConfig", "RecipeError"]
