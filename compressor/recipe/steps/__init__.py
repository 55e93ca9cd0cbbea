"""Each step's settings, one module per step (``quantize``, ``weight_quantize``, ``prune``,
``distill``, ``finetune`` with the shared training loop); ``recipe/schema.py`` assembles the
recipe from them. They live in the recipe layer, below the steps that read them, because the
layers under ``steps`` (context, targets, bench, report, models) read the recipe too."""
