"""Training: optimiser, EMA, train state, sharded train step, orbax checkpoints and the train
loop."""
