"""Dataset builders and loaders; every module here registers its datasets on import."""

from datasets.discovery import import_submodules

import_submodules(__name__, __path__)
