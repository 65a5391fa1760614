"""Reproducing published numbers: registered recipes (recipes.py), ``pyrovae reproduce NAME``
(runner.py) and the table ours-against-the-paper (table.py); docs/reproduce.md."""

from pyrovae.reproduce.recipes import REPRODUCTIONS, Recipe
from pyrovae.reproduce.runner import recipe_config, reproduce
from pyrovae.reproduce.table import write_table

__all__ = ["REPRODUCTIONS", "Recipe", "recipe_config", "reproduce", "write_table"]
