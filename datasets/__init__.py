"""wsbench datasets: the weight-space contract, symmetry transforms, registry, builders,
loaders of the published formats and the cache. Imports torch only."""
