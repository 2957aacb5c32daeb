"""Training around the hardware: ex-situ (numpy, optional PyTorch), write-verify transfer onto
programmed tiles, hybrid in-situ training of the last layer, and the checkpointed stage
pipeline that `network run` and `mcnn run` share."""
