"""The one trainer's contract, for every registered task: kill -9 between two checkpoints, rerun
the command, and the final state equals the uninterrupted run's bit for bit; SIGTERM checkpoints
and exits 0 (checked on one task: the handler is the loop's). Also the Task protocol's parameter
groups: phases update only their group, repeats, frozen groups, several EMAs, and restoring
matching groups into another task."""

import itertools
import os
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from configs import toy_consistency, toy_edm
from configs.base import base_config
from configs.consistency_base import METHODS
from generative.training import checkpoint, loop, task
from generative.training import step as step_lib
from generative.training.writers import read_metrics

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NUM_STEPS = 16
COMMON = [
    f"--config.training.num_steps={NUM_STEPS}",
    "--config.training.log_every=1",
    "--config.training.checkpoint_every=4",
    "--config.training.keep_checkpoints=20",
    "--config.training.sample_every=-1",
    "--config.training.eval_every=-1",
    "--config.training.time_limit_minutes=0",
    "--config.training.batch_size=8",
]
TINY_GRAPH_MODEL = [
    "--config.model.num_layers=1",
    "--config.model.hidden_nodes=8",
    "--config.model.hidden_edges=8",
    "--config.model.hidden_globals=8",
    "--config.model.num_heads=2",
    "--config.model.ffn_nodes=8",
    "--config.model.ffn_edges=8",
    "--config.model.ffn_globals=8",
    "--config.model.structural_features=False",
]
TINY_MLP = ["--config.model.width=16", "--config.model.num_blocks=1"]
# A tiny command for every registered task; a new task must add one here, or name in COVERED_BY a
# task whose run has the same parameter groups and EMAs (checked below).
# '{teacher}' is the test's own tiny run of TEACHERS[name], trained first.
TINY_RUNS = {
    "cd": ["configs/toy_consistency.py:cd", *TINY_MLP, "--config.task.teacher={teacher}"],
    "diffusion": ["configs/toy_edm.py", *TINY_MLP],
    "digress": ["configs/graph_digress_comm20.py", "--config.task.num_steps=10", *TINY_GRAPH_MODEL],
    "graph_diffusion": ["configs/graph_edm_comm20.py", *TINY_GRAPH_MODEL],
}
TEACHERS = {"cd": ["diffusion", "--config.data.name=eight_gaussians"]}
# Tasks whose state (groups 'net' with EMAs 'ema' and 'target' for ct; 'net' with 'ema' for ict,
# ect and sct; 'net' with 'ema' and the frozen 'teacher' for scd) and data path are those of a task
# above: its run proves their resume. (Each contract run costs about a minute of the 2-core suite.)
COVERED_BY = {"ct": "cd", "ect": "diffusion", "ict": "diffusion", "sct": "diffusion", "scd": "cd"}
# The SIGTERM save is the loop's, the same for every task: one task's run checks it.
SIGTERM_STAGE = {"diffusion"}


def _ema_layout(name):
    config = toy_consistency.get_config(name) if name in METHODS else toy_edm.get_config()
    built = task.create_task(config)
    return built.trainable, {group: sorted(rules) for group, rules in built.emas().items()}


def test_every_registered_task_has_a_contract_run():
    library_tasks = {name for name, target in task.TASKS.items() if isinstance(target, str)}
    assert set(TINY_RUNS) | set(COVERED_BY) == library_tasks
    # ct's groups and EMAs are cd's (cd is ct with a frozen teacher); ict's are diffusion's, and
    # ect's are ict's (its config needs a trained init run, so it is compared by class).
    cd, ct = task.task_class("cd"), task.task_class("ct")
    assert issubclass(cd, ct) and cd.emas is ct.emas and cd.ema_target == ct.ema_target
    assert _ema_layout("ct") == (("net",), {"net": ["ema", "target"]})
    assert _ema_layout("ict") == _ema_layout("diffusion") == (("net",), {"net": ["ema"]})
    ect, ict = task.task_class("ect"), task.task_class("ict")
    assert issubclass(ect, ct) and ect.emas is ict.emas is ct.emas
    assert (ect.trainable, ect.ema_target) == (ict.trainable, ict.ema_target) == (("net",), False)
    # sct's 'net' is a dict of the network and the log-variance head under diffusion's one EMA;
    # scd adds cd's frozen 'teacher' (restored by load_run, never differentiated) and no 'target'.
    assert _ema_layout("sct") == _ema_layout("diffusion")
    sct, scd = task.task_class("sct"), task.task_class("scd")
    assert issubclass(scd, sct) and scd.emas is sct.emas and scd.trainable == cd.trainable


def _teacher(workdir):
    return os.path.join(os.path.dirname(workdir), "teacher")


def _command(name, workdir, extra=()):
    config, *overrides = TINY_RUNS[name]
    overrides = [o.format(teacher=_teacher(workdir)) for o in (*overrides, *extra)]
    return [
        sys.executable, "-m", "experiments.train", "--config", config, "--workdir", workdir,
        *COMMON, *overrides,
    ]  # fmt: skip


def _env(cache):
    """8 host devices (as in-process tests), and one persistent compilation cache for the runs of
    a test, so that the reruns load the executables the first run compiled."""
    return dict(
        os.environ,
        XLA_FLAGS="--xla_force_host_platform_device_count=8",
        GENERATIVE_COMPILATION_CACHE=cache,
    )


def _run(name, workdir, cache, extra=()):
    result = subprocess.run(
        _command(name, workdir, extra), cwd=ROOT, env=_env(cache), capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-3000:]


def _steps(workdir):
    directory = os.path.join(workdir, "checkpoints")
    if not os.path.isdir(directory):
        return []
    return sorted(int(d) for d in os.listdir(directory) if d.isdigit())


def _start_and_signal(name, workdir, cache, signum, after_step):
    """Starts the command and sends `signum` once checkpoint `after_step` or a later one is
    complete; returns (return code, stderr)."""
    process = subprocess.Popen(
        _command(name, workdir),
        cwd=ROOT,
        env=_env(cache),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 300
    while process.poll() is None and time.time() < deadline:
        if any(step >= after_step for step in _steps(workdir)):
            process.send_signal(signum)
            break
        time.sleep(0.005)
    _, stderr = process.communicate(timeout=300)
    return process.returncode, stderr


def _final_state(workdir):
    saved = checkpoint.Checkpointer(os.path.join(workdir, "checkpoints")).restore()
    return jax.device_get(saved)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(TINY_RUNS))
def test_kill_then_rerun_is_bitwise_identical_and_sigterm_saves(name, tmp_path):
    straight, killed = str(tmp_path / "straight"), str(tmp_path / "killed")
    cache = str(tmp_path / "jax_cache")
    if name in TEACHERS:
        teacher, *extra = TEACHERS[name]
        _run(teacher, _teacher(straight), cache, extra)
    _run(name, straight, cache)

    code, stderr = _start_and_signal(name, killed, cache, signal.SIGKILL, after_step=2)
    assert code == -signal.SIGKILL, stderr[-2000:]
    after_kill = max(_steps(killed))
    assert after_kill < NUM_STEPS, "the run finished before it was killed: the test proves nothing"

    if name in SIGTERM_STAGE:
        code, stderr = _start_and_signal(
            name, killed, cache, signal.SIGTERM, after_step=after_kill + 2
        )
        assert code == 0, stderr[-3000:]
        assert "SIGTERM: saved checkpoint" in stderr
        after_term = max(_steps(killed))
        assert after_kill < after_term < NUM_STEPS, (after_kill, after_term)

    _run(name, killed, cache)  # rerunning the same command finishes the run
    a, b = _final_state(straight), _final_state(killed)
    assert int(a["step"]) == int(b["step"]) == NUM_STEPS
    jax.tree.map(np.testing.assert_array_equal, a, b)
    # Each step is logged once, however the run was interrupted.
    logged = [r["step"] for r in read_metrics(killed) if r["kind"] == "train"]
    assert logged == list(range(1, NUM_STEPS + 1))

    # The run loads back from its workdir alone (what experiments.sample / evaluate do).
    run = checkpoint.load_run(killed)
    assert int(run.state.step) == NUM_STEPS
    samples = run.task.sample(run.params, jax.random.key(0), 4, steps=3, batch_size=4)
    assert len(samples) == 4
    run.task.save_samples(str(tmp_path / "samples.png"), samples)
    assert os.path.getsize(tmp_path / "samples.png") > 0


# ------------------------------------------------------------------- parameter groups


class TwoGroups(task.TaskBase):
    """Group 'a' fits the data mean; group 'b' (updated `repeats` times per step) fits a's current
    value; 'teacher' is frozen. The EMAs of 'a': 'ema' (fixed 0.5) and 'slow' (fixed 0.9)."""

    trainable = ("a", "b")
    repeats = 3

    def example_batch(self):
        return {"x": np.zeros((8, 2), np.float32)}

    def train_batches(self, start_step, batch_size, process_index, process_count):
        for step in itertools.count(start_step):
            yield {"x": np.full((batch_size, 2), 3.0, np.float32)}

    def init(self, key, example_batch):
        zeros = jnp.zeros(2)
        return {"a": {"w": zeros}, "b": {"w": zeros}, "teacher": {"w": zeros + 7.0}}

    def emas(self):
        fixed = lambda d: ml_collections.ConfigDict({"kind": "fixed", "decay": d})  # noqa: E731
        return {"a": {"ema": fixed(0.5), "slow": fixed(0.9)}, "b": {"ema": fixed(0.5)}}

    def phases(self):
        def fit_data(params, frozen, batch, key):
            assert set(frozen) == {"teacher", "a.ema", "a.slow", "b.ema", "step"}
            return jnp.mean((batch["x"] - params["a"]["w"]) ** 2), {
                "teacher": frozen["teacher"]["w"][0]
            }

        def fit_a(params, frozen, batch, key):
            target = jax.lax.stop_gradient(params["a"]["w"])
            return jnp.sum((params["b"]["w"] - target) ** 2), {}

        return [task.Phase("a", fit_data), task.Phase("b", fit_a, repeats=self.repeats)]


def _two_groups_run(repeats=3):
    config = base_config("moons", "mlp")
    config.task = ml_collections.ConfigDict({"name": "two_groups"})
    config.optim.update(name="adam", lr=0.1, warmup_steps=0)
    config.training.batch_size = 8
    task.register_task("two_groups", type("TwoGroupsK", (TwoGroups,), {"repeats": repeats}))
    run = loop.Run(config, "/tmp/unused_two_groups")
    return run, run.initial_state()


def test_phases_update_only_their_group_and_emas_follow_their_rates():
    run, state = _two_groups_run()
    assert set(state.params) == {"a", "b"} and set(state.frozen) == {"teacher"}
    assert set(state.opt_state) == {"a", "b"}  # the frozen group has no optimiser state
    train_step = step_lib.make_train_step(run.task, run.optimizers, run.config, run.mesh)
    batch = step_lib.put_batch(next(run.data(0)), run.mesh)
    state, metrics = train_step(state, batch, jax.random.key(0))
    # Adam's first update is -lr sign(g): a moves once by 0.1 towards 3, b three times by 0.1
    # towards a's new value 0.1, so b passes it (0.1, 0.2, 0.3 after its first three updates?).
    np.testing.assert_allclose(state.params["a"]["w"], [0.1, 0.1], rtol=1e-5)
    assert float(state.params["b"]["w"][0]) > 0.0
    np.testing.assert_allclose(state.frozen["teacher"]["w"], [7.0, 7.0])
    assert float(metrics["a.teacher"]) == 7.0
    assert {"a.loss", "b.loss", "a.grad_norm", "b.update_norm", "a.slow.decay"} <= set(metrics)
    # EMAs: ema <- d ema + (1 - d) params from 0: 0.5 * 0.1 and 0.1 * 0.1
    np.testing.assert_allclose(state.ema["a"]["ema"]["w"], [0.05, 0.05], rtol=1e-5)
    np.testing.assert_allclose(state.ema["a"]["slow"]["w"], [0.01, 0.01], rtol=1e-5)
    np.testing.assert_allclose(state.sampling_params()["a"]["w"], [0.05, 0.05], rtol=1e-5)


def test_a_phase_repeats_k_times_per_step():
    b_after = {}
    for repeats in (1, 3):
        run, state = _two_groups_run(repeats)
        train_step = step_lib.make_train_step(run.task, run.optimizers, run.config, run.mesh)
        batch = step_lib.put_batch(next(run.data(0)), run.mesh)
        state, _ = train_step(state, batch, jax.random.key(0))
        b_after[repeats] = float(state.params["b"]["w"][0])
        assert int(state.opt_state["b"][0].count) == repeats  # one Adam count per update
    assert b_after[1] != b_after[3]


def test_restore_matching_groups_into_another_task(tmp_path):
    run, state = _two_groups_run()
    state = state.replace(
        params={"a": {"w": jnp.array([1.0, 2.0])}, "b": {"w": jnp.array([5.0, 6.0])}}
    )
    saver = checkpoint.Checkpointer(str(tmp_path / "checkpoints"))
    saver.save(4, state)
    saver.close()
    saved = checkpoint.Checkpointer(str(tmp_path / "checkpoints")).restore()
    # Another task: 'a' matches by name and shape, 'b' has another shape, 'c' is new.
    other = state.replace(
        params={"a": {"w": jnp.zeros(2)}, "b": {"w": jnp.zeros(3)}, "c": {"w": jnp.zeros(2)}},
        ema={"a": {"ema": {"w": jnp.zeros(2)}}},
        step=jnp.zeros((), jnp.int32),
    )
    restored = checkpoint.restore_matching(other, saved)
    np.testing.assert_array_equal(restored.params["a"]["w"], [1.0, 2.0])
    np.testing.assert_array_equal(restored.params["b"]["w"], np.zeros(3))
    np.testing.assert_array_equal(restored.params["c"]["w"], np.zeros(2))
    np.testing.assert_array_equal(restored.frozen["teacher"]["w"], [7.0, 7.0])
    assert int(restored.step) == 0
