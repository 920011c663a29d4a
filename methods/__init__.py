"""The graph method (neural graphs); every module here registers its methods on import."""

from datasets.discovery import import_submodules

import_submodules(__name__, __path__)
