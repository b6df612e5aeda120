"""Stage 2, training one grid cell: the papermill driver, the training loop, batches from the cache,
models and optimizers by name, one GPU per cell. Imports the data stage and the core, never later stages."""
