"""Class labels in the data layer: the labelled toy generators, the labels of every data part's training rows and
evaluation data, label files, the stratified split of labelled images, and ``resolve``'s class count."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

import scorelab as sl
from scorelab.core.errors import ConfigError, DataError
from scorelab.data import images
from scorelab.data.files import SPARSE_CLASSES, load_labels
from scorelab.data.sources import FILE, IMAGE_FILES, data_part
from scorelab.data.toy import CLASSES, DATASETS, DEFAULT_GMM, EIGHT_GAUSSIANS, LABELLED

EXPECTED_CLASSES = {"moons": 2, "8gaussians": 8, "pinwheel": 5, "gmm": 3, "circles": 2, "2spirals": 2, "rings": 4}
N = 4000


def seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def labelled(name: str, n: int = N, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    return LABELLED[name](n, seeded(seed))


def settings(dataset: str, **values):
    return sl.Config(dataset=dataset, **values).data.settings


# --- the labelled toy generators ---------------------------------------------------------------


def test_the_labelled_toys_and_their_class_counts():
    assert CLASSES == EXPECTED_CLASSES
    assert set(LABELLED) == set(CLASSES) and set(DATASETS) - set(LABELLED) == {"swiss_roll", "swissroll",
                                                                                 "checkerboard"}


@pytest.mark.parametrize("name", sorted(EXPECTED_CLASSES))
@pytest.mark.parametrize("n", [1, 2, 7, 1001])
def test_a_labelled_generator_draws_the_plain_generators_points_and_int64_labels(name, n):
    points, labels = labelled(name, n, seed=n)
    assert torch.equal(points, DATASETS[name](n, seeded(n)))
    assert torch.equal(points, sl.data.load(name, n, generator=seeded(n)))
    assert labels.shape == (n,) and labels.dtype == torch.int64
    assert labels.min() >= 0 and labels.max() < CLASSES[name]


@pytest.mark.parametrize(("name", "mixture"), [("8gaussians", EIGHT_GAUSSIANS), ("gmm", DEFAULT_GMM)])
def test_mixture_points_are_nearest_their_labelled_component(name, mixture):
    points, labels = labelled(name)
    means, stds = mixture.means.float(), mixture.stds.float()
    mahalanobis = (((points[:, None] - means) / stds) ** 2).sum(-1)
    assert (mahalanobis.argmin(1) == labels).float().mean() > 0.99
    assert torch.allclose(torch.bincount(labels, minlength=len(means)) / N, mixture.weights.float(), atol=0.03)


def test_moons_labels_are_the_half_circle_each_point_was_drawn_on():
    from sklearn.datasets import make_moons

    points, labels = labelled("moons")
    arcs, arc_labels = make_moons(2000, noise=0.0, shuffle=False)  # the two noise-free half circles
    arcs = torch.from_numpy(arcs * 2.0 + np.array([-1.0, -0.2])).float()
    nearest_arc = torch.from_numpy(arc_labels)[torch.cdist(points, arcs).argmin(1)]
    assert (nearest_arc == labels).float().mean() > 0.99
    assert points[labels == 0, 1].mean() > points[labels == 1, 1].mean()  # 0 is the upper moon


@pytest.mark.parametrize("n", [4000, 4003])
def test_pinwheel_labels_are_the_arms(n):
    points, labels = labelled("pinwheel", n)
    assert set(torch.bincount(labels, minlength=5).tolist()) <= {n // 5, math.ceil(n / 5)}
    # As in test_toy_data: the arm k from the angle −φ = 2πk/5 + 0.25·exp(r/2).
    r, phi = points.norm(dim=1), torch.atan2(points[:, 1], points[:, 0])
    arm = torch.round((-phi - 0.25 * torch.exp(r / 2)) / (2 * math.pi / 5)).long() % 5
    assert (arm == labels).float().mean() > 0.97


def test_rings_labels_are_the_rings_from_the_outermost():
    points, labels = labelled("rings")
    radii = torch.tensor([3.0, 2.25, 1.5, 0.75])
    assert ((points.norm(dim=1) - radii[labels]).abs() < 0.4).all()
    assert torch.bincount(labels, minlength=4).tolist() == [1000, 1000, 1000, 1000]


def test_circles_labels_are_outer_then_inner():
    points, labels = labelled("circles", 1001)
    radius = points.norm(dim=1)
    assert ((radius < 2.25).long() == labels).float().mean() > 0.99  # the radii 3 and 1.5 are 3 noise stds apart
    assert abs(radius[labels == 0].mean().item() - 3.0) < 0.05 and abs(radius[labels == 1].mean().item() - 1.5) < 0.05
    assert (labels == 0).sum() == 500  # make_circles: ⌊n/2⌋ on the outer circle


@pytest.mark.parametrize("n", [4000, 4001])
def test_2spirals_labels_are_the_spirals(n):
    points, labels = labelled("2spirals", n)
    half = math.ceil(n / 2)
    assert torch.equal(labels, (torch.arange(n) >= half).long())
    # The second spiral is the point reflection of the first, up to N(0, 0.1²) noise in each.
    pairs = points[: n - half] + points[half:]
    assert abs(pairs.std().item() - 0.1 * math.sqrt(2)) < 0.01


# --- each part's labels -----------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(EXPECTED_CLASSES))
def test_a_toys_labels_are_those_of_its_loaded_rows(name):
    part, stated = data_part(name), settings(name, n_data=600)
    rows = part.load(name, stated, seeded(5))
    labels = part.labels(name, stated, seeded(5))
    expected_rows, expected_labels = labelled(name, 600, seed=5)
    assert torch.equal(rows, expected_rows) and torch.equal(labels, expected_labels)
    fresh = part.labelled_truth(name, stated)
    assert all(torch.equal(a, b) for a, b in zip(fresh(300, seeded(9)), labelled(name, 300, seed=9)))


@pytest.mark.parametrize("name", ["swiss_roll", "swissroll", "checkerboard", "tones"])
def test_sets_without_labels_have_none(name):
    part = data_part(name)
    assert part.labels(name, part.make(), seeded(0)) is None
    assert part.labelled_truth(name, part.make()) is None


def test_digits_labels_go_through_the_split_with_their_images():
    from sklearn.datasets import load_digits

    digits = load_digits()
    part, stated = data_part("digits"), settings("digits")
    image_set = part.images("digits", stated)
    train_labels = part.labels("digits", stated, seeded(0))
    test, test_labels = part.labelled_truth("digits", stated)
    assert torch.equal(train_labels, image_set.train_labels) and torch.equal(test, image_set.test)
    every = torch.cat([train_labels, test_labels]).numpy()
    assert np.array_equal(np.sort(every), np.sort(digits.target))
    originals: dict[bytes, set[int]] = {}
    for image, target in zip(digits.images, digits.target):
        originals.setdefault(image.astype(np.float32).tobytes(), set()).add(int(target))
    for split_images, split_labels in ((image_set.train, train_labels), (test, test_labels)):
        for image, label in zip(split_images[:, 0].numpy(), split_labels.tolist()):
            assert label in originals[image.tobytes()]


def _labelled_images(tmp_path, n: int = 20, classes: int = 4) -> tuple[str, np.ndarray, str]:
    """An .npy of ``n`` 3×3 images, image i all i (so each image says its index), and a label file of i mod classes."""
    array = np.repeat(np.arange(n, dtype=np.float64), 9).reshape(n, 3, 3)
    labels = np.arange(n) % classes
    np.save(tmp_path / "images.npy", array)
    np.save(tmp_path / "labels.npy", labels)
    return str(tmp_path / "images.npy"), labels, str(tmp_path / "labels.npy")


def test_user_images_split_stratified_by_their_label_file(tmp_path):
    path, labels, label_file = _labelled_images(tmp_path)
    stated = settings(path, labels=label_file, test_fraction=0.2, split_seed=3)
    part = data_part(path)
    assert part is IMAGE_FILES
    image_set = part.images(path, stated)
    assert torch.bincount(image_set.test_labels).tolist() == [1, 1, 1, 1]  # stratified: one test image per class
    assert torch.bincount(image_set.train_labels).tolist() == [4, 4, 4, 4]
    for split_images, split_labels in ((image_set.train, image_set.train_labels),
                                       (image_set.test, image_set.test_labels)):
        assert np.array_equal(labels[split_images[:, 0, 0, 0].long().numpy()], split_labels.numpy())
    assert torch.equal(part.labels(path, stated, seeded(0)), image_set.train_labels)
    test, test_labels = part.labelled_truth(path, stated)
    assert torch.equal(test, image_set.test) and torch.equal(test_labels, image_set.test_labels)
    assert part.labelled_truth(path, settings(path)) is None and part.labels(path, settings(path), seeded(0)) is None


def test_a_class_too_small_to_split_is_one_line_naming_the_label_file(tmp_path):
    path, _, _ = _labelled_images(tmp_path, n=9)
    np.save(tmp_path / "odd.npy", np.array([0, 0, 0, 0, 1, 1, 1, 1, 2]))  # class 2 has one image
    with pytest.raises(DataError, match="odd.npy: cannot split 9 images") as caught:
        images.user_set(path, 0.3, 0, str(tmp_path / "odd.npy"))
    assert "\n" not in str(caught.value)


def test_a_data_files_labels_are_its_label_files_in_row_order(tmp_path):
    rows = np.arange(10.0).reshape(5, 2)
    np.savetxt(tmp_path / "data.csv", rows, delimiter=",")
    (tmp_path / "labels.txt").write_text("2\n0\n1\n1\n0\n")
    path = str(tmp_path / "data.csv")
    stated = settings(path, labels=str(tmp_path / "labels.txt"))
    assert data_part(path) is FILE
    assert FILE.labels(path, stated, seeded(0)).tolist() == [2, 0, 1, 1, 0]
    truth, labels = FILE.labelled_truth(path, stated)
    assert torch.equal(truth, torch.from_numpy(rows).float()) and labels.tolist() == [2, 0, 1, 1, 0]
    assert FILE.labels(path, settings(path), seeded(0)) is None and FILE.labelled_truth(path, settings(path)) is None


# --- label files --------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "write"), [
    ("l.csv", lambda path: path.write_text("class\n3\n0\n1\n")),
    ("l.csv", lambda path: path.write_text("3\n0\n1\n")),
    ("l.txt", lambda path: path.write_text("3\n0\n\n1\n")),
    ("l.npy", lambda path: np.save(path, np.array([3, 0, 1]))),
    ("l.npy", lambda path: np.save(path, np.array([3.0, 0.0, 1.0]))),
    ("l.npy", lambda path: np.save(path, np.array([[3], [0], [1]], dtype=np.int32))),
])
def test_label_files_of_each_kind_read_the_same(tmp_path, name, write):
    write(tmp_path / name)
    labels = load_labels(tmp_path / name, rows=3, classes=4)
    assert labels.dtype == torch.int64 and labels.tolist() == [3, 0, 1]


BAD_LABEL_FILES = {
    "missing": ("absent.csv", None, "no such file"),
    "empty": ("l.csv", lambda path: path.write_text(""), "empty"),
    "header only": ("l.csv", lambda path: path.write_text("label\n"), "no data rows"),
    "a fraction": ("l.csv", lambda path: path.write_text("0\n2.5\n1\n"), "label 2.5 at row 2 is not an integer"),
    "a word": ("l.txt", lambda path: path.write_text("0\ncat\n1\n"), "'cat'"),
    "negative": ("l.txt", lambda path: path.write_text("0\n-1\n1\n"), "label -1 at row 2 is negative"),
    "at classes": ("l.npy", lambda path: np.save(path, np.array([0, 4, 1])), "label 4 at row 2 is not below classes"),
    "too few": ("l.npy", lambda path: np.save(path, np.array([0, 1])), "holds 2 labels, but the data has 3"),
    "too many": ("l.csv", lambda path: path.write_text("0\n1\n1\n0\n"), "holds 4 labels, but the data has 3"),
    "two columns": ("l.csv", lambda path: path.write_text("0,1\n1,1\n1,0\n"), "one column"),
    "an empty array": ("l.npy", lambda path: np.save(path, np.zeros(0)), "holds no labels"),
    "a nan": ("l.npy", lambda path: np.save(path, np.array([0.0, np.nan, 1.0])), "not an integer"),
    "text as npy": ("l.npy", lambda path: path.write_text("0\n1\n1\n"), "not an .npy file"),
    "a json file": ("l.json", lambda path: path.write_text("[0, 1, 1]"), "unsupported file type"),
}


@pytest.mark.parametrize("case", sorted(BAD_LABEL_FILES))
def test_a_bad_label_file_is_one_data_error_line_naming_it(tmp_path, case):
    name, write, message = BAD_LABEL_FILES[case]
    if write is not None:
        write(tmp_path / name)
    with pytest.raises(DataError) as caught:
        load_labels(tmp_path / name, rows=3, classes=4)
    text = str(caught.value)
    assert "\n" not in text and text.startswith(str(tmp_path / name)) and message in text


def test_a_bad_label_file_for_images_is_refused_when_they_are_split(tmp_path):
    path, _, _ = _labelled_images(tmp_path)
    np.save(tmp_path / "short.npy", np.arange(19) % 4)
    with pytest.raises(DataError, match="short.npy: holds 19 labels, but the data has 20"):
        data_part(path).images(path, settings(path, labels=str(tmp_path / "short.npy")))


# --- resolve: the class count -----------------------------------------------------------------------


@pytest.mark.parametrize("name", [*sorted(EXPECTED_CLASSES), "digits"])
def test_resolve_fills_the_class_count_of_a_conditional_run(name):
    stated = settings(name, conditional=True)
    assert data_part(name).resolve(stated, None) == dataclasses.replace(stated, classes=CLASSES.get(name, 10))
    more = settings(name, conditional=True, classes=12)
    assert data_part(name).resolve(more, None) is more


@pytest.mark.parametrize("name", ["moons", "swiss_roll", "digits"])
def test_resolve_leaves_an_unconditional_runs_settings_as_they_are(name):
    stated = settings(name)
    assert data_part(name).resolve(stated, None) is stated and stated.classes == 0


@pytest.mark.parametrize("name", ["swiss_roll", "swissroll", "checkerboard"])
def test_resolve_refuses_a_conditional_run_on_data_without_labels(name):
    with pytest.raises(DataError, match=f"^{name} has no class labels; --conditional needs") as caught:
        data_part(name).resolve(settings(name, conditional=True), None)
    assert "moons" in str(caught.value) and "--labels FILE" in str(caught.value)


def test_resolve_refuses_fewer_classes_than_the_data_has():
    with pytest.raises(DataError, match="8gaussians has 8 classes, more than classes = 5"):
        data_part("8gaussians").resolve(settings("8gaussians", conditional=True, classes=5), None)


def test_resolve_counts_a_label_files_classes_and_checks_it_against_the_rows(tmp_path):
    data = torch.zeros(5, 2)
    np.savetxt(tmp_path / "data.csv", data.numpy(), delimiter=",")
    (tmp_path / "labels.csv").write_text("label\n0\n6\n1\n1\n0\n")
    path, label_file = str(tmp_path / "data.csv"), str(tmp_path / "labels.csv")
    assert FILE.resolve(settings(path, conditional=True, labels=label_file), data).classes == 7
    with pytest.raises(DataError, match="holds 5 labels, but the data has 4"):
        FILE.resolve(settings(path, labels=label_file), data[:4])  # checked even when unconditional
    with pytest.raises(DataError, match="label 6 at row 2 is not below classes = 3"):
        FILE.resolve(settings(path, conditional=True, labels=label_file, classes=3), data)
    with pytest.raises(DataError, match="^the data file has no class labels"):
        FILE.resolve(settings(path, conditional=True), data)


def test_resolve_counts_the_classes_of_user_images(tmp_path):
    path, _, label_file = _labelled_images(tmp_path)
    assert IMAGE_FILES.resolve(settings(path, conditional=True, labels=label_file), None).classes == 4
    with pytest.raises(DataError, match="^the image set has no class labels"):
        IMAGE_FILES.resolve(settings(path, conditional=True), None)


@pytest.mark.parametrize(("values", "message"), [
    ({"dataset": "moons", "labels": "l.csv"}, "labels does not apply"),
    ({"dataset": "digits", "labels": "l.csv"}, "labels does not apply"),
    ({"dataset": "tones", "conditional": True}, "conditional does not apply"),
    ({"dataset": "moons", "label_dropout": 1.0}, "label_dropout must be in [0.0, 1.0)"),
    ({"dataset": "moons", "classes": -1}, "classes must be >= 0"),
])
def test_label_settings_where_they_do_not_belong_are_config_errors(values, message):
    with pytest.raises(ConfigError) as caught:
        sl.Config(**values)
    assert message in str(caught.value)


def test_classes_counted_from_a_label_file_are_capped_where_it_has_fewer_labels(tmp_path):
    """Gaps in the numbering are allowed up to SPARSE_CLASSES classes; beyond that (and beyond the label count) a
    stray id would size the class embedding, and is refused in one line."""
    (tmp_path / "ok.csv").write_text(f"0\n{SPARSE_CLASSES - 1}\n")
    assert load_labels(tmp_path / "ok.csv").max().item() == SPARSE_CLASSES - 1
    (tmp_path / "stray.csv").write_text(f"0\n{SPARSE_CLASSES}\n")
    with pytest.raises(DataError, match=f"would make {SPARSE_CLASSES + 1} classes of 2 labels"):
        load_labels(tmp_path / "stray.csv")
    assert load_labels(tmp_path / "stray.csv", classes=SPARSE_CLASSES + 1).tolist() == [0, SPARSE_CLASSES]
