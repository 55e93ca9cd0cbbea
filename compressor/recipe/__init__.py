from compressor.recipe.loader import load_recipe, parse_recipe
from compressor.recipe.schema import Recipe

__all__ = ["Recipe", "load_recipe", "parse_recipe"]
