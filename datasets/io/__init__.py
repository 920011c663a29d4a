"""Readers (and writers) of the published file formats: IDX images, CIFAR-10 python
batches, PyTorch state dicts, the DWSNets INR layout, the Small CNN Zoo tables."""
