"""What the non-finite guard and the checksums cost the main job (configs/digits_edm.py).

The train step itself is unchanged by them (the guard reads the metrics the loop already fetches
at logged steps); what they add is work at each checkpoint: a host copy of the state, a finiteness
count, a CRC-32 per array and a second orbax item at a save, and the same checks at a restore. So
this benchmark times, on the main job's own TrainState, in turn (A B A B ...):

  A  a plain orbax save (StandardSave, what the loop did before) / a plain restore;
  B  `Checkpointer.save` (guard, checksums, two items) / `Checkpointer.restore` (shape check,
     finiteness, checksums);

and reports the median of the per-pair differences B - A. It also times the main job's train
step (median of --steps steps after compilation) and converts the extra seconds per save into the
overhead on the job's step time: extra / (checkpoint_every * step time).

    python -m benchmarks.checkpoint_overhead [--pairs 10] [--steps 20]
"""

import os
import statistics
import tempfile
import time

import jax
import orbax.checkpoint as ocp
from absl import app, flags

from configs.digits_edm import get_config
from generative.training import checkpoint, loop
from generative.training.step import make_train_step, put_batch

_PAIRS = flags.DEFINE_integer("pairs", 10, "A B pairs of saves (and of restores).")
_STEPS = flags.DEFINE_integer("steps", 20, "Train steps timed after compilation.")


def _seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main(argv):
    del argv
    config = get_config()
    with tempfile.TemporaryDirectory() as root:
        run = loop.Run(config, root)
        state = run.initial_state()
        train_step = make_train_step(run.task, run.optimizers, config, run.mesh)
        batches = run.data(0)
        step_times = []
        for step in range(_STEPS.value + 1):
            batch = put_batch(next(batches), run.mesh)
            key = jax.random.fold_in(run.train_key, step)
            start = time.perf_counter()
            state, metrics = train_step(state, batch, key)  # donates the old state
            jax.block_until_ready(metrics)
            if step:  # the first compiles
                step_times.append(time.perf_counter() - start)
        step_time = statistics.median(step_times)

        plain = ocp.CheckpointManager(
            os.path.join(root, "plain"),
            options=ocp.CheckpointManagerOptions(max_to_keep=2, create=True),
        )
        guarded = checkpoint.Checkpointer(os.path.join(root, "guarded"), max_to_keep=2)
        like = jax.tree.map(ocp.utils.to_shape_dtype_struct, state)

        def plain_save(step):
            plain.save(step, args=ocp.args.StandardSave(state))
            plain.wait_until_finished()

        rows = {"save": [], "restore": []}
        for step in range(1, _PAIRS.value + 1):
            a = _seconds(lambda step=step: plain_save(step))
            b = _seconds(lambda step=step: guarded.save(step, state))
            rows["save"].append((a, b))
            a = _seconds(lambda step=step: plain.restore(step, args=ocp.args.StandardRestore(like)))
            b = _seconds(lambda step=step: guarded.restore(like, step))
            rows["restore"].append((a, b))
        plain.close()
        guarded.close()

    values = sum(x.size for x in jax.tree.leaves(state))
    print(f"digits_edm TrainState: {values:,} values; {jax.device_count()} device(s)")
    print(f"train step: median {step_time * 1e3:.0f} ms over {_STEPS.value} steps")
    print(
        f"{'':8} {'A plain s':>10} {'B guarded s':>12} {'B - A s':>9} (medians of {_PAIRS.value})"
    )
    for name, pairs in rows.items():
        a = statistics.median(p[0] for p in pairs)
        b = statistics.median(p[1] for p in pairs)
        diff = statistics.median(p[1] - p[0] for p in pairs)
        print(f"{name:8} {a:10.3f} {b:12.3f} {diff:9.3f}")
    extra = statistics.median(p[1] - p[0] for p in rows["save"])
    every = config.training.checkpoint_every
    print(
        f"overhead on the main job (a save every {every} steps): "
        f"{100 * extra / (every * step_time):.2f}% of its step time"
    )


if __name__ == "__main__":
    app.run(main)
