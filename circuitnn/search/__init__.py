"""Searches above the chain: many runs of the chain's own stages, handed to Dask (the operating
point of a device, `circuitnn.search.operating`)."""
