"""Reproducing published numbers: registered recipes (recipes.py), ``pyrovae reproduce NAME``
(runner.py) and the table ours-against-the-paper (table.py); the estimator rankings papers
claim, over seeds (rankings.py, ranking_runner.py); docs/reproduce.md."""

from pyrovae.reproduce.recipes import REPRODUCTIONS, Recipe
from pyrovae.reproduce.runner import recipe_config, reproduce
from pyrovae.reproduce.table import write_table
from pyrovae.reproduce.rankings import Ranking  # (registers the rankings)
from pyrovae.reproduce.ranking_runner import reproduce_ranking

__all__ = ["REPRODUCTIONS", "Ranking", "Recipe", "recipe_config", "reproduce",
           "reproduce_ranking", "write_table"]
