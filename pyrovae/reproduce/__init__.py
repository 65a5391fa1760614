"""Reproducing published numbers: registered recipes (recipes.py), ``pyrovae reproduce NAME``
(runner.py) and the table ours-against-the-paper (table.py); docs/reproduce.md."""

from .recipes import REPRODUCTIONS, Recipe
from .runner import recipe_config, reproduce
from .table import write_table

__all__ = ["REPRODUCTIONS", "Recipe", "recipe_config", "reproduce", "write_table"]
