"""Keep the name ``datasets`` bound to this package inside a wsbench process.

Hugging Face's ``datasets`` package, which many users have installed, shares our
package's name. Outside the repository root (``sys.path`` order), ``import datasets`` could
find theirs first. ``baselines``, ``methods`` and ``benchmarks`` run this file (by path, with
``runpy``) before their first ``datasets`` import: it binds ``sys.modules["datasets"]`` to
the folder this file is in, so wsbench always gets its own package, or, if another
``datasets`` was imported first in the same process, raises one clear ``ImportError``. It
binds the name in this process only: other projects' ``import datasets`` is untouched.
"""

import importlib.util
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def bind() -> None:
    current = sys.modules.get("datasets")
    if current is not None:
        where = getattr(current, "__file__", None)
        if where is None or Path(where).resolve().parent != HERE:
            raise ImportError(
                f"another package named 'datasets' is already imported ({where}; Hugging Face datasets?), but "
                f"wsbench needs its own ({HERE}): import wsbench (benchmarks, baselines, methods) before it, "
                f"or use the two in separate processes")
        return
    spec = importlib.util.spec_from_file_location("datasets", HERE / "__init__.py",
                                                  submodule_search_locations=[str(HERE)])
    module = importlib.util.module_from_spec(spec)
    sys.modules["datasets"] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules["datasets"]
        raise


if __name__ != "datasets.binding":  # run by path from the other packages
    bind()
