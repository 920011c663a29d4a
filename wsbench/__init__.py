"""wsbench: a benchmark suite for weight-space learning. This package is the public surface:
everything a researcher needs to run the benchmark from Python, bring a method or a dataset,
check a method's symmetry claims and score their own training loop.

    import wsbench
    result = wsbench.evaluate("mypkg.methods:build", suite="inr", seeds=[0])
    print(result.markdown)          # the leaderboard, the 13 reference methods beside yours
    result.leaderboard              # the same as a pandas DataFrame; result.records: the run records

    @wsbench.register_method("my-method", symmetries=("permutation",), profiles={"quick": {"hidden": 64}})
    def build(task: wsbench.TaskInfo, hidden: int) -> torch.nn.Module: ...

    wsbench.check_method("my-method").raise_for_failures()   # claims hold on random and trained networks

    data = wsbench.load_dataset("digits-inr", suite="inr")    # OGB style: your loop, our scoring
    wsbench.score(my_model(data.val.weights), data.val, suite="inr")   # {"accuracy": ...}

The command line is ``wsbench run|list|check|fetch|leaderboard|paper-tables`` (or ``python -m
benchmarks.run``). The folders behind it (``datasets``, ``baselines``, ``methods``,
``benchmarks``) are the implementation, not the interface.
"""

import benchmarks  # noqa: F401  (binds the name ``datasets`` to wsbench's own package first)
from benchmarks.api import evaluate, load_dataset, score
from benchmarks.config import EvaluationConfig
from benchmarks.grid import GridResult
from benchmarks.launchers import register_all
from benchmarks.plugins import PluginError
from datasets.contract import ContractReport, ContractViolation, check_method
from datasets.dataset_table import DatasetInfo, RemoteFile, register_dataset
from datasets.errors import ConfigError, DataNotFound, InvalidData, InvalidItem, UnsupportedArchitecture, WsbenchError
from datasets.functional import forward
from datasets.method_table import MethodInfo, build_method, register_method
from datasets.normalisation import LayerStats, Normaliser
from datasets.options import Option
from datasets.source import Built, DatasetSource, LoadOptions
from datasets.sources.network_folder import NetworkFolder, register_network_folder
from datasets.spec import ArchSpec, Layer, mlp_spec, siren_spec
from datasets.symmetry import flip_signs, permute_hidden, rescale_positive, shift_phase
from datasets.weight_dataset import Split, TaskInfo, WeightDataset
from datasets.weights import MixedWeights, Weights, WeightSpace, as_mixed

__all__ = [
    # run and score
    "evaluate", "EvaluationConfig", "GridResult", "load_dataset", "score",
    # bring a method
    "register_method", "MethodInfo", "build_method", "TaskInfo", "UnsupportedArchitecture",
    "check_method", "ContractReport", "ContractViolation",
    # bring a dataset
    "register_dataset", "DatasetInfo", "DatasetSource", "Built", "LoadOptions", "Split", "WeightDataset", "Option",
    "RemoteFile", "NetworkFolder", "register_network_folder",
    # the weight space
    "WeightSpace", "MixedWeights", "Weights", "as_mixed", "ArchSpec", "Layer", "mlp_spec", "siren_spec", "forward",
    "LayerStats", "Normaliser",
    # its symmetries (each preserves the networks' function)
    "permute_hidden", "flip_signs", "rescale_positive", "shift_phase",
    # errors
    "WsbenchError", "ConfigError", "DataNotFound", "InvalidData", "InvalidItem", "PluginError",
]

register_all()  # the built-in methods and datasets, then the installed plugins (which may import wsbench)
