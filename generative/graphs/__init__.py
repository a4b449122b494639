"""Graph generation on jraph: data, metrics, GNNs and graph diffusion.

Modules (import them directly; this package imports nothing heavy so modules can depend on each
other without cycles):

* `jraph_compat` - the jraph utilities we use, patched for current jax.
* `batching` - networkx <-> dense masked tensors <-> padded jraph.GraphsTuple in static buckets.
* `datasets` - Comm20, grid, SBM, planar, lobster, tree and a multi-domain mixture, made offline.
* `orbits`, `mmd`, `validity` - 4-node orbit counts, MMD^2 metrics, V.U.N.
"""
