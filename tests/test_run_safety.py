"""Nothing lost, nothing silent: the non-finite guard (stop and skip), verified checkpoints with a
fallback, the resume's config check, the workdir lock, metrics.jsonl without duplicates, and one
line for each bad input of the launchers.

Most runs here use a one-parameter task whose data stream holds NaN at chosen steps, so that a
divergence happens exactly where the test says and nothing slow compiles."""

import itertools
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
import pytest

from configs.base import base_config
from generative.training import checkpoint, errors, loop, task
from generative.training import step as step_lib
from generative.training.writers import MetricWriter, read_metrics

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class MeanWithNaNs(task.TaskBase):
    """Each of the config.task.size entries of w (random at init, so its checkpoint files hold
    incompressible bytes) fits the data mean 3 by least squares; the batches of steps in
    config.task.nan_steps are NaN."""

    def example_batch(self):
        return {"x": np.zeros((8, 1), np.float32)}

    def train_batches(self, start_step, batch_size, process_index, process_count):
        for step in itertools.count(start_step):
            value = np.nan if step in self.config.task.nan_steps else 3.0
            yield {"x": np.full((batch_size, 1), value, np.float32)}

    def init(self, key, example_batch):
        return {"net": {"w": jax.random.normal(key, (self.config.task.size,))}}

    def phases(self):
        def loss(params, frozen, batch, key):
            return jnp.mean((batch["x"] - params["net"]["w"]) ** 2), {}

        return [task.Phase("net", loss)]


task.register_task("mean_with_nans", MeanWithNaNs)


def mean_config(num_steps=6, nan_steps=(), **training):
    config = base_config("moons", "mlp")
    config.task = ml_collections.ConfigDict(
        {"name": "mean_with_nans", "nan_steps": nan_steps, "size": 1024}
    )
    config.optim.update(name="adam", lr=0.1, warmup_steps=0, decay="constant")
    config.eval.evaluators = ()
    config.training.update(
        batch_size=8,
        num_steps=num_steps,
        log_every=1,
        checkpoint_every=2,
        keep_checkpoints=3,
        sample_every=-1,
        eval_every=-1,
    )
    config.training.update(training)
    return config


def _steps(path):
    return sorted(int(d) for d in os.listdir(os.path.join(path, "checkpoints")) if d.isdigit())


def _restore(path, step=None):
    saver = checkpoint.Checkpointer(os.path.join(path, "checkpoints"))
    try:
        return saver.restore(step=step)
    finally:
        saver.close()


# ------------------------------------------------------------------- the non-finite guard


@pytest.mark.parametrize("log_every", [1, 100])
def test_a_nan_loss_stops_the_run_and_keeps_the_good_checkpoints(tmp_path, log_every):
    """Logged every step, the NaN loss of step 5 stops the run there; logged rarely, the save of
    step 6 refuses the NaN state. Either way checkpoints 2 and 4 stay as they were."""
    path = str(tmp_path)
    loop.train(mean_config(num_steps=4), path)
    good = jax.device_get(_restore(path))
    config = mean_config(num_steps=8, nan_steps=(4,), log_every=log_every)
    with pytest.raises(errors.NonFiniteError) as error:
        loop.train(config, path, config_change_ok=True)
    message = str(error.value)
    assert "last good checkpoint, step 4" in message
    assert ("step 5: " if log_every == 1 else "step 6: the state has") in message
    assert _steps(path) == [2, 4]
    jax.tree.map(np.testing.assert_array_equal, jax.device_get(_restore(path)), good)


def test_skip_mode_skips_nonfinite_updates_and_stops_after_too_many_in_a_row(tmp_path):
    config = mean_config(num_steps=6, nan_steps=(1, 3), on_nonfinite="skip")
    last = loop.train(config, str(tmp_path / "skip"))
    assert last["skipped_updates"] == 2 and last["skipped_in_a_row"] == 0
    # A skipped update leaves no trace in the parameters or the optimiser: the run equals four
    # clean steps (up to float rounding: the wrapped update compiles differently).
    loop.train(mean_config(num_steps=4), str(tmp_path / "clean"))
    skip, clean = _restore(str(tmp_path / "skip")), _restore(str(tmp_path / "clean"))
    w_skip, w_clean = skip["params"]["net"]["w"], clean["params"]["net"]["w"]
    np.testing.assert_allclose(w_skip, w_clean, rtol=1e-5, atol=1e-6)
    skipped = [r["skipped_updates"] for r in read_metrics(str(tmp_path / "skip"))]
    assert skipped == [0, 1, 1, 2, 2, 2]

    config = mean_config(num_steps=6, nan_steps=(2, 3), on_nonfinite="skip")
    config.training.max_nonfinite_in_a_row = 2
    with pytest.raises(errors.NonFiniteError, match="step 4: skipped_in_a_row=2"):
        loop.train(config, str(tmp_path / "stop"))


# ------------------------------------------------------------------- checkpoints


def _damage(step_dir, kind):
    state_dir = os.path.join(step_dir, "state")
    files = [os.path.join(r, f) for r, _, fs in os.walk(state_dir) for f in fs]
    data = [f for f in files if "/d/" in f]
    if kind == "arrays_deleted":
        for f in data:
            os.remove(f)
    elif kind == "arrays_truncated":
        for f in data:
            with open(f, "r+b") as handle:
                handle.truncate(os.path.getsize(f) // 2)
    elif kind == "metadata_garbage":
        for name in ("_METADATA", "manifest.ocdbt"):
            with open(os.path.join(state_dir, name), "wb") as handle:
                handle.write(b"\x00garbage{")
    elif kind == "bytes_flipped":  # 64 bytes in the middle of each file holding array values
        for f in data:
            if os.path.getsize(f) > 4096:
                with open(f, "r+b") as handle:
                    raw = bytearray(handle.read())
                    start = len(raw) // 2 - 32
                    raw[start : start + 64] = bytes(b ^ 0xFF for b in raw[start : start + 64])
                    handle.seek(0)
                    handle.write(raw)


@pytest.mark.parametrize(
    "kind", ["arrays_deleted", "arrays_truncated", "metadata_garbage", "bytes_flipped"]
)
def test_a_damaged_newest_checkpoint_falls_back_to_the_previous_one(tmp_path, kind, caplog):
    path = str(tmp_path)
    loop.train(mean_config(num_steps=4), path)
    previous = jax.device_get(_restore(path, step=2))
    _damage(os.path.join(path, "checkpoints", "4"), kind)
    run = loop.Run(mean_config(num_steps=4), path)
    state = run.restore()
    run.checkpointer.close()
    assert int(state.step) == 2
    jax.tree.map(np.testing.assert_array_equal, jax.device_get(state.params), previous["params"])
    assert "restored checkpoint 2 instead of 4" in caplog.text
    assert _steps(path) == [2]
    assert os.listdir(os.path.join(path, "checkpoints.damaged"))[0].startswith("4.")
    # Training on from step 2 writes a new, good checkpoint 4.
    loop.train(mean_config(num_steps=4), path)
    assert _steps(path) == [2, 4] and int(_restore(path)["step"]) == 4


def _save_unchecked(path, step, state, checksums):
    """A checkpoint written past the Checkpointer's checks, as a damaged disk could leave it."""
    manager = ocp.CheckpointManager(os.path.join(path, "checkpoints"))
    items = ocp.args.Composite(
        state=ocp.args.StandardSave(state), checksums=ocp.args.JsonSave(checksums)
    )
    manager.save(step, args=items)
    manager.wait_until_finished()
    manager.close()


def test_wrong_checksums_and_nonfinite_values_are_detected(tmp_path, caplog):
    path = str(tmp_path)
    loop.train(mean_config(num_steps=2), path)
    state = _restore(path)
    arrays = checkpoint.host_arrays(state)
    sums = checkpoint._checksums(arrays)
    _save_unchecked(path, 3, state, {**sums, "params/net/w": sums["params/net/w"] + 1})
    poisoned = jax.tree.map(lambda x: x, state)
    poisoned["ema"]["net"]["ema"]["w"] = np.where(np.arange(1024) == 7, np.nan, 1.0).astype("f4")
    _save_unchecked(path, 4, poisoned, checkpoint._checksums(checkpoint.host_arrays(poisoned)))
    with pytest.raises(errors.CheckpointError, match="fails the checksums of params/net/w"):
        _restore(path, step=3)
    with pytest.raises(errors.CheckpointError, match=r"1 non-finite values in ema/net/ema/w"):
        _restore(path, step=4)
    assert int(_restore(path)["step"]) == 2
    assert "restored checkpoint 2 instead of 4, 3" in caplog.text


def test_no_usable_checkpoint_and_a_missing_step_are_one_message_each(tmp_path):
    path = str(tmp_path)
    loop.train(mean_config(num_steps=4), path)
    with pytest.raises(errors.CheckpointError, match=r"checkpoint 999 .* steps there are \[2, 4\]"):
        checkpoint.load_run(path, 999)
    for step in (2, 4):
        _damage(os.path.join(path, "checkpoints", str(step)), "arrays_deleted")
    with pytest.raises(errors.CheckpointError, match="no usable checkpoint .* checkpoint 4 .*2"):
        loop.train(mean_config(num_steps=4), path)


def test_a_changed_config_is_refused_and_leaves_config_json_untouched(tmp_path):
    path = str(tmp_path)
    loop.train(mean_config(num_steps=4), path)
    with open(os.path.join(path, "config.json")) as f:
        before = f.read()
    changed = mean_config(num_steps=4)
    changed.optim.lr = 0.2
    with pytest.raises(errors.WorkdirError, match=r"optim.lr 0.1 -> 0.2.*--config_change_ok"):
        loop.train(changed, path)
    with open(os.path.join(path, "config.json")) as f:
        assert f.read() == before
    # Logging, evaluation and time-limit fields may change without the flag.
    loop.train(mean_config(num_steps=4, log_every=2, time_limit_minutes=5.0), path)
    with open(os.path.join(path, "config.json")) as f:
        assert json.loads(f.read())["training"]["log_every"] == 2
    assert json.loads(before)["training"]["log_every"] == 1


def test_a_resume_whose_shapes_differ_names_the_arrays_and_the_changed_fields(tmp_path):
    path = str(tmp_path)
    loop.train(mean_config(num_steps=2), path)
    with open(os.path.join(path, "config.json")) as f:
        before = f.read()
    smaller = mean_config(num_steps=2)
    smaller.task.size = 512
    with pytest.raises(errors.CheckpointMismatchError) as error:
        loop.train(smaller, path, config_change_ok=True)
    message = str(error.value)
    assert "ema/net/ema/w is float32[1024] there, the config gives float32[512]" in message
    assert "config fields changed: task.size 1024 -> 512" in message
    with open(os.path.join(path, "config.json")) as f:
        assert f.read() == before


# ------------------------------------------------------------------- workdir and metrics


def test_a_second_run_on_a_locked_workdir_is_refused_until_the_first_dies(tmp_path):
    path = str(tmp_path)
    holder = subprocess.Popen(
        [
            sys.executable, "-c",
            "import sys, time; from generative.training.workdir import WorkdirLock\n"
            f"with WorkdirLock({path!r}):\n    print('held', flush=True); time.sleep(60)",
        ],
        cwd=ROOT, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(errors.WorkdirError, match=f"in use by another run \\(process {holder.pid}"):
        loop.train(mean_config(num_steps=2), path)
    holder.kill()
    holder.wait()
    loop.train(mean_config(num_steps=2), path)  # the dead run's lock does not block
    assert _steps(path) == [2]


def test_metrics_hold_each_step_once_after_a_resume(tmp_path):
    path = str(tmp_path)
    with MetricWriter(path, tensorboard=False) as writer:
        for step in range(1, 7):
            writer.write(step, {"loss": float(step)})
    with open(os.path.join(path, "metrics.jsonl"), "a") as f:
        f.write('{"step": 7, "kind": "tr')  # cut short by a kill
    with MetricWriter(path, tensorboard=False, resume_step=4) as writer:
        writer.write(5, {"loss": 50.0})
    records = read_metrics(path)
    assert [r["step"] for r in records] == [1, 2, 3, 4, 5]
    assert records[-1]["loss"] == 50.0


def test_workdir_that_is_a_file_or_read_only_is_refused(tmp_path):
    a_file = tmp_path / "file"
    a_file.write_text("")
    with pytest.raises(errors.WorkdirError, match="is a file, not a directory"):
        loop.train(mean_config(), str(a_file))
    if os.geteuid() != 0:  # root may write anywhere
        read_only = tmp_path / "ro"
        read_only.mkdir()
        read_only.chmod(0o500)
        with pytest.raises(errors.WorkdirError, match="is not writable"):
            loop.train(mean_config(), str(read_only))


# ------------------------------------------------------------------- the launchers


def _cli(*args):
    result = subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    return result.returncode, result.stderr.strip().splitlines()


@pytest.mark.slow
def test_launchers_print_one_line_for_expected_errors(tmp_path):
    from tests.test_training import tiny_config

    path = str(tmp_path / "run")
    loop.train(tiny_config(num_steps=2, checkpoint_every=2), path)

    code, lines = _cli("experiments.evaluate", "--workdir", path, "--checkpoint", "999")
    assert code == 1 and lines[-1].startswith("error: ") and "steps there are [2]" in lines[-1]
    assert not any("Traceback" in line for line in lines)
    code, lines = _cli("experiments.sample", "--workdir", path, "--num", "0")
    assert code == 1 and "flag --num=0: 0 is not a positive integer" in "\n".join(lines)

    bad_config = tmp_path / "bad.py"
    bad_config.write_text("def get_config():\n    return (\n")
    code, lines = _cli("experiments.train", "--config", str(bad_config), "--workdir", path)
    assert code == 2 and lines[-1].startswith(f"config file '{bad_config}' line 2")
    a_file = tmp_path / "file"
    a_file.write_text("")
    code, lines = _cli(
        "experiments.train", "--config", "configs/toy_edm.py", "--workdir", str(a_file)
    )
    assert code == 1 and "is a file, not a directory" in lines[-1]
    code, lines = _cli(
        "experiments.train", "--config", "configs/toy_edm.py", "--workdir", str(a_file), "--debug"
    )
    assert code == 1 and any("Traceback" in line for line in lines)


def test_abstract_state_matches_the_initial_state(tmp_path):
    run = loop.Run(mean_config(), str(tmp_path))
    like = step_lib.abstract_state(run.task, run.optimizers, run.mesh)
    state = run.initial_state()
    run.checkpointer.close()
    assert jax.tree.structure(like) == jax.tree.structure(state)
    for a, b in zip(jax.tree.leaves(like), jax.tree.leaves(state), strict=True):
        assert (a.shape, a.dtype, a.sharding) == (b.shape, b.dtype, b.sharding)


def test_a_resume_may_change_how_the_cores_run_but_not_the_network(tmp_path):
    """model.impl picks an implementation of the same function (runs trained before the models'
    default became 'auto' saved 'xla'); a changed width is another network."""
    from generative.training import workdir as workdir_lib

    trained = base_config("digits", "unet")
    trained.model.impl = "xla"
    workdir_lib.write_config(str(tmp_path), trained)
    now = base_config("digits", "unet")
    assert now.model.impl == "auto"
    changes = workdir_lib.check_resume_config(str(tmp_path), now)
    assert changes == {"model.impl": ("xla", "auto")}
    now.model.model_channels *= 2
    with pytest.raises(errors.WorkdirError, match="model.model_channels"):
        workdir_lib.check_resume_config(str(tmp_path), now)
