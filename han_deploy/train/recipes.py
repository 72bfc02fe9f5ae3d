"""Named training recipes: presets of ``han-train`` options (docs/training.md, "Recipes").

``paper`` is the paper's recipe, unchanged (per-branch cross-entropy, SGD 3e-2 with lr steps at
1/3, 2/3 and 5/6 of the epochs, no augmentation). ``fast`` is for a fixed budget of CPU minutes
(``--budget-minutes``): it was chosen by mAP on a validation split carved from CUHK03 pair-1's
training identities (docs/training.md, "Choosing the recipe"); its erasing probability and weight decay
were raised after a full-length search on that split. Options given on the command line win over the
preset's values.
"""

from __future__ import annotations

from typing import Any

RECIPES: dict[str, dict[str, Any]] = {
    "paper": {},
    "fast": {
        "schedule": "cosine",
        "warmup_epochs": 1.0,
        "label_smoothing": 0.1,
        "flip": True,
        "pad": 10,
        "random_erasing": 0.7,
        "weight_decay": 1e-3,
    },
}


def recipe_defaults(name: str) -> dict[str, Any]:
    """The option values ``name`` sets (argparse destinations), or a clear error for an unknown name."""
    try:
        return dict(RECIPES[name])
    except KeyError:
        raise ValueError(f"unknown recipe {name!r}; known: {', '.join(RECIPES)}") from None
