"""PNG pictures: graph grids of networkx graphs, training curves from metrics records, and the
save_png / save_curves_png writers (Pillow only, CPU, fast)."""

import math

import networkx as nx
import numpy as np
from PIL import Image

from generative.training import visualize
from generative.training.writers import MetricWriter, read_metrics

CURVE = (20, 60, 160)  # the smoothed loss line and eval dots


def _dark(picture: np.ndarray) -> np.ndarray:
    return picture.astype(np.int32).mean(-1) < 128


def _cell(picture: np.ndarray, i: int, columns: int, cell: int = 96) -> np.ndarray:
    """Inside of cell i (its 1-pixel frame left out)."""
    r, c = divmod(i, columns)
    return picture[r * cell + 1 : (r + 1) * cell - 1, c * cell + 1 : (c + 1) * cell - 1]


def _train(losses, start=0, every=10):
    return [{"step": start + every * i, "kind": "train", "loss": v} for i, v in enumerate(losses)]


def test_graph_grid_shape_follows_count_columns_and_cell():
    graphs = [nx.path_graph(4) for _ in range(5)]
    picture = visualize.graph_grid(graphs)
    assert picture.dtype == np.uint8 and picture.shape == (2 * 96, 3 * 96, 3)
    assert visualize.graph_grid(graphs, columns=2).shape == (3 * 96, 2 * 96, 3)
    assert visualize.graph_grid(graphs, columns=5, cell=40).shape == (40, 5 * 40, 3)
    assert visualize.graph_grid(graphs[:1]).shape == (96, 96, 3)


def test_graph_grid_draws_in_occupied_cells_only():
    graphs = [nx.cycle_graph(6), nx.empty_graph(1), nx.star_graph(5), nx.empty_graph(3)]
    graphs.append(nx.disjoint_union(nx.complete_graph(4), nx.empty_graph(2)))
    picture = visualize.graph_grid(graphs, columns=3)
    for i in range(len(graphs)):
        assert _dark(_cell(picture, i, 3)).sum() > 0, f"cell {i} is blank"
    assert np.all(_cell(picture, 5, 3) == 255), "the unused cell is not white"


def test_graph_grid_edges_add_ink_and_isolated_nodes_are_drawn():
    complete, empty = nx.complete_graph(10), nx.empty_graph(10)
    full = visualize.graph_grid([complete])
    bare = visualize.graph_grid([empty])
    non_white = lambda p: (p < 250).any(-1).sum()  # noqa: E731
    assert non_white(full) > non_white(bare) + 200
    # ten isolated nodes: ten dots of a few pixels each, no edges
    assert 10 * 4 <= _dark(bare).sum() <= 10 * 30
    # edges are grey, nodes black
    grey = (np.abs(full.astype(np.int32) - 150) < 30).all(-1)
    assert grey.sum() > 100 and (full == 0).all(-1).sum() >= 10 * 4


def test_graph_grid_empty_and_single_node_graphs():
    picture = visualize.graph_grid([nx.Graph(), nx.empty_graph(1)], columns=2)
    assert picture.shape == (96, 192, 3)
    dot = np.argwhere((_cell(picture, 1, 2) == 0).all(-1))
    assert len(dot) > 0 and np.all(np.abs(dot.mean(0) - 47) < 3), "single node not centred"
    assert visualize.graph_grid([]).shape == (96, 96, 3)


def test_graph_grid_is_deterministic():
    graphs = [nx.erdos_renyi_graph(20, 0.2, seed=s) for s in range(4)]
    first = visualize.graph_grid(graphs)
    second = visualize.graph_grid([g.copy() for g in graphs])
    np.testing.assert_array_equal(first, second)
    assert not np.array_equal(_cell(first, 0, 2), _cell(first, 1, 2))


def test_training_curves_one_panel_per_metric():
    records = _train(np.linspace(1.0, 0.1, 50))
    loss_only = visualize.training_curves(records)
    assert loss_only.dtype == np.uint8 and loss_only.shape == (160, 640, 3)
    records += [{"step": 250, "kind": "eval", "swd": 0.3, "histogram": [0.1, 0.9], "x": math.nan}]
    records += [{"step": 490, "kind": "eval", "swd": 0.2, "done": True}]
    with_eval = visualize.training_curves(records)
    assert with_eval.shape == (2 * 160, 640, 3), "lists, NaN-only and bool fields make no panel"
    records += [{"step": 490, "kind": "eval", "mmd": 0.01}]
    assert visualize.training_curves(records).shape[0] == 3 * 160
    many = {f"metric_{i}": float(i) for i in range(9)}
    capped = visualize.training_curves(records + [{"step": 500, "kind": "eval", **many}])
    assert capped.shape[0] == (1 + 6) * 160
    sized = visualize.training_curves(records, width=300, height=500)
    assert sized.shape == (500, 300, 3)
    assert visualize.training_curves([{"step": 3, "kind": "eval", "fd_ratio": 2.0}]).shape[0] == 160


def test_eval_panels_in_stable_order():
    record = {"step": 1, "kind": "eval", "finite": 1.0, "swd_floor": 0.1, "mmd": 0.2}
    record.update({"degree_mmd": 0.3, "swd": 0.4, "fd_ratio": 1.5, "zeta": 0.0})
    names = visualize._eval_names([record])
    assert names == ["fd_ratio", "swd", "mmd", "degree_mmd", "finite", "zeta"]
    shuffled = dict(reversed(list(record.items())))
    assert visualize._eval_names([shuffled])[:4] == names[:4]


def test_training_curves_decreasing_loss_is_drawn_falling():
    picture = visualize.training_curves(_train(np.geomspace(2.0, 0.01, 300)))
    rows, cols = np.nonzero((picture == CURVE).all(-1))
    assert len(rows) > 300
    left, right = rows[cols < 200].mean(), rows[cols > 440].mean()
    assert left < right - 40, "the loss should fall from top left to bottom right"
    # log scale: a geometric decay is a straight line, its middle halfway between its ends
    middle = rows[(cols > 300) & (cols < 340)].mean()
    assert abs(middle - (left + right) / 2) < 0.15 * (right - left), "loss y axis is not log"


def test_training_curves_smoothed_line_over_raw_points():
    noisy = _train(np.where(np.arange(400) % 2, 1.0, 0.25))
    picture = visualize.training_curves(noisy)[:, 200:440]
    raw = np.nonzero((np.abs(picture.astype(np.int32) - (170, 195, 235)) < 8).all(-1))[0]
    smooth = np.nonzero((picture == CURVE).all(-1))[0]
    assert len(raw) > 100 and len(smooth) > 100
    assert np.ptp(smooth) < 0.5 * np.ptp(raw), "the smoothed line follows the noise"


def test_training_curves_constant_and_one_point_records():
    for losses in ([0.5] * 20, [0.0] * 20, [-1.0] * 3, [0.7]):
        picture = visualize.training_curves(_train(losses))
        assert picture.shape == (160, 640, 3)
        assert (picture == CURVE).all(-1).sum() >= 9, f"no curve for {losses[:2]}"
    records = _train([0.5]) + [{"step": 0, "kind": "eval", "swd": 0.1}]
    picture = visualize.training_curves(records)
    assert picture.shape == (320, 640, 3)
    assert (picture[160:] == CURVE).all(-1).sum() >= 9, "the single eval point is not drawn"


def test_training_curves_placeholder_without_usable_records():
    for records in ([], [{"step": 0, "kind": "train", "loss": math.nan}], [{"step": 0}]):
        picture = visualize.training_curves(records)
        assert picture.dtype == np.uint8 and picture.ndim == 3 and picture.shape[0] < 100
        assert _dark(picture).sum() > 20, "the placeholder text is missing"


def test_save_png_graphs_and_save_curves_png(tmp_path):
    graphs = [nx.path_graph(5), nx.complete_graph(4), nx.Graph()]
    visualize.save_png(str(tmp_path / "graphs.png"), graphs)
    with Image.open(tmp_path / "graphs.png") as image:
        assert image.size == (2 * 96, 2 * 96) and image.mode == "RGB"
        np.testing.assert_array_equal(np.asarray(image), visualize.graph_grid(graphs))
    visualize.save_png(str(tmp_path / "tuple.png"), tuple(graphs[:1]))
    with Image.open(tmp_path / "tuple.png") as image:
        assert image.size == (96, 96)

    writer = MetricWriter(str(tmp_path), tensorboard=False)
    for step in range(1, 30):
        writer.write(step, {"loss": np.float32(1.0 / step), "lr": 1e-3}, "train")
    writer.write(29, {"swd": 0.2, "mmd": math.inf, "histogram": np.arange(3)}, "eval")
    writer.close()
    visualize.save_curves_png(str(tmp_path / "curves.png"), read_metrics(str(tmp_path)))
    with Image.open(tmp_path / "curves.png") as image:
        assert image.size == (640, 2 * 160)
