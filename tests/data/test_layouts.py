"""Tests of the 'paired', 'unpaired' and 'captioned' layouts and of image folders, on
small folders the tests write and on TFDS mock data (offline, no TF, no JAX)."""

import dataclasses
import json

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image
from tensorflow_datasets.core import registered

from genjax.data import DataSpec, DatasetMeta, layouts, serve
from genjax.data import pipeline as pipeline_lib
from genjax.data.folders import FolderError
from genjax.data.text import Tokenizer

RNG = np.random.default_rng(0)


def _save(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    array = np.asarray(array, np.uint8)
    Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array).save(path)


def _noise(shape, rng=RNG):
    return rng.integers(0, 256, shape, dtype=np.uint8)


def _spec(root, layout, **fields):
    fields = dict(dict(split="train", eval_split="test", image_size=8), **fields)
    return DataSpec(name=f"folder:{root}", layout=layout, **fields)


def _take(pipeline, count):
    return [next(pipeline) for _ in range(count)]


def _assert_same(expected, actual):
    assert len(expected) == len(actual)
    for a, b in zip(expected, actual):
        assert a.keys() == b.keys()
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])


def _check_resume(spec, steps_before, steps_after, **kwargs):
    original = serve.training_pipeline(spec, **kwargs)
    _take(original, steps_before)
    state = json.loads(json.dumps(original.get_state()))  # what a checkpoint stores
    expected = _take(original, steps_after)
    restored = serve.training_pipeline(spec, **kwargs)
    restored.set_state(state)
    _assert_same(expected, _take(restored, steps_after))
    return expected


# ------------------------------------------------------------------------- images


def _image_folder(root):
    """train/cat (5), train/dog (3), and test/dog (2) only."""
    for split, name, count in [("train", "cat", 5), ("train", "dog", 3), ("test", "dog", 2)]:
        for i in range(count):
            _save(root / split / name / f"{i:02d}.png", _noise((12, 10, 3)))


def test_images_from_class_folders_are_labelled_like_image_folder(tmp_path):
    _image_folder(tmp_path)
    spec = _spec(tmp_path, "images", image_size=6)
    meta = serve.meta(spec)
    assert meta.num_classes == 2 and meta.num_examples == {"train": 8, "test": 2}
    # Class ids are the same in every split, even one that lacks a class.
    np.testing.assert_array_equal(serve.load_split(spec, "test")["label"], [1, 1])
    assert meta.image_shape == (None, None, 3)
    data = serve.load_split(spec, "train")
    assert data["image"].shape == (8, 6, 6, 3) and data["image"].dtype == np.float32
    np.testing.assert_array_equal(data["label"], [0] * 5 + [1] * 3)  # sorted file order
    # Same preprocessing as TFDS images: the centred square, PIL-resized, scaled.
    raw = np.asarray(Image.open(tmp_path / "train" / "dog" / "01.png"))
    expected, _ = pipeline_lib._preprocess({"image": raw}, image_key="image",
                                           label_key=None, image_size=6)
    np.testing.assert_array_equal(data["image"][6], expected / np.float32(127.5) - 1)
    batch = next(serve.training_pipeline(spec, global_batch_size=4, num_devices=2, seed=0))
    assert batch["image"].shape == (2, 2, 6, 6, 3) and batch["label"].shape == (2, 2)
    _check_resume(spec, 3, 3, global_batch_size=4, num_devices=2, seed=1)


def test_loose_images_have_no_labels_and_channels_follow_the_first_image(tmp_path):
    _save(tmp_path / "train" / "a.png", _noise((9, 9, 1)))
    _save(tmp_path / "train" / "b.jpg", _noise((9, 9, 3)))
    spec = _spec(tmp_path, "images")
    meta = serve.meta(spec)
    assert meta.num_classes is None and meta.image_shape[-1] == 1
    data = serve.load_split(spec, "train")
    assert data["image"].shape == (2, 8, 8, 1) and not data["label"].any()
    rgb = serve.load_split(dataclasses.replace(spec, channels=3), "train")
    assert rgb["image"].shape == (2, 8, 8, 3)
    with pytest.raises(pipeline_lib.DatasetNotAvailableError, match="no class labels"):
        serve.meta(dataclasses.replace(spec, needs_labels=True))


# ------------------------------------------------------------------------- paired


def _target_of(image):
    """A pixelwise function of the input that resizing, cropping and mirroring keep:
    the channels reversed (PIL resizes each channel on its own)."""
    return image[..., ::-1]


def _side_by_side(root, counts={"train": 10, "test": 4}, size=(14, 12)):
    for split, count in counts.items():
        for i in range(count):
            image = _noise((*size, 3))
            _save(root / split / f"{i:03d}.png",
                  np.concatenate([image, _target_of(image)], axis=1))


def _assert_target_follows_input(batch):
    np.testing.assert_array_equal(batch["target"], _target_of(batch["input"]))


def test_paired_jitter_is_the_same_on_input_and_target(tmp_path):
    _side_by_side(tmp_path)
    spec = _spec(tmp_path, "paired", image_size=8)
    assert spec.crop_load_size == 9  # round(8 * 286 / 256)
    pipeline = serve.training_pipeline(spec, global_batch_size=4, num_devices=2, seed=0)
    batches = _take(pipeline, 6)  # 2 batches per epoch: three epochs
    for batch in batches:
        assert batch["input"].shape == (2, 2, 8, 8, 3) and batch["label"].shape == (2, 2)
        _assert_target_follows_input(batch)
    # The jitter is real: training crops differ from the held-out (centred) images.
    held_out = serve.load_split(spec, "train")
    _assert_target_follows_input(held_out)
    seen = np.concatenate([b["input"].reshape(-1, 8, 8, 3) for b in batches])
    centred = {held_out["input"][i].tobytes() for i in range(10)}
    assert sum(image.tobytes() not in centred for image in seen) > len(seen) // 2
    # Held-out reads are never jittered: the centred square of each file's input half.
    for i in [0, 9]:
        both = np.asarray(Image.open(tmp_path / "train" / f"{i:03d}.png"))
        expected = layouts._fit(both[:, :12], 8) / np.float32(127.5) - 1
        np.testing.assert_array_equal(held_out["input"][i], expected)


def test_jitter_crops_the_resized_image_and_mirrors(tmp_path):
    image = _noise((10, 10, 3))
    big = layouts._fit(image, 13)
    crop = layouts.Jitter(load_size=13, size=8, top=2, left=5, flip=False)
    np.testing.assert_array_equal(crop(image), big[2:10, 5:13])
    mirrored = layouts.Jitter(load_size=13, size=8, top=2, left=5, flip=True)
    np.testing.assert_array_equal(mirrored(image), big[2:10, 5:13][:, ::-1])
    draws = [layouts.Jitter.draw(np.random.default_rng(s), 13, 8) for s in range(200)]
    assert {d.top for d in draws} == set(range(6)) == {d.left for d in draws}
    assert 60 < sum(d.flip for d in draws) < 140


def test_side_by_side_direction_picks_the_half(tmp_path):
    left, right = _noise((8, 8, 3)), _noise((8, 8, 3))
    _save(tmp_path / "train" / "x.png", np.concatenate([left, right], axis=1))
    for direction, (source, target) in [("AtoB", (left, right)), ("BtoA", (right, left))]:
        data = serve.load_split(_spec(tmp_path, "paired", direction=direction), "train")
        np.testing.assert_array_equal(data["input"][0], source / np.float32(127.5) - 1)
        np.testing.assert_array_equal(data["target"][0], target / np.float32(127.5) - 1)


def test_paired_folders_match_by_name_and_keep_their_channels(tmp_path):
    for split, count in [("train", 6), ("test", 2)]:
        for i in reversed(range(count)):  # written out of order: matched by name
            grey = _noise((10, 10, 1))
            _save(tmp_path / "A" / split / f"{i}.png", grey)
            _save(tmp_path / "B" / split / f"{i}.png", np.repeat(255 - grey, 3, axis=-1))
    spec = _spec(tmp_path, "paired")
    meta = serve.meta(spec)
    assert meta.image_channels == {"input": 1, "target": 3}
    assert meta.num_examples == {"train": 6, "test": 2}
    batches = serve.training_pipeline(spec, global_batch_size=3, num_devices=1, seed=0)
    for batch in _take(batches, 4):
        assert batch["input"].shape == (1, 3, 8, 8, 1)
        # target = 255 - input per pixel; resizing keeps it up to PIL's rounding.
        np.testing.assert_allclose(batch["target"][..., :1], -batch["input"], atol=1.01 / 127.5)
    swapped = serve.meta(dataclasses.replace(spec, direction="BtoA"))
    assert swapped.image_channels == {"input": 3, "target": 1}


def test_paired_tfds_dataset_by_feature_names(tmp_path):
    spec = DataSpec(name="div2k/bicubic_x2", split="train", eval_split="validation",
                    image_size=12, layout="paired", data_dir=str(tmp_path),
                    input_feature="lr", target_feature="hr")
    with tfds.testing.mock_data(num_examples=8, policy=tfds.testing.MockPolicy.USE_CODE):
        meta = serve.meta(spec)
        batch = next(serve.training_pipeline(spec, global_batch_size=4, num_devices=2, seed=0))
        with pytest.raises(pipeline_lib.DatasetNotAvailableError, match="no feature 'low'"):
            serve.meta(dataclasses.replace(spec, input_feature="low"))
    assert meta.image_channels == {"input": 3, "target": 3}
    assert batch["input"].shape == batch["target"].shape == (2, 2, 12, 12, 3)
    assert np.abs(batch["input"]).max() <= 1


def _tiny_labelled_pairs(data_dir):
    """A prepared TFDS dataset shaped as the embedded paired datasets are: features
    'input' (grey), 'target' (RGB: the input inverted) and a class 'label'."""
    with registered.skip_registration():
        class TinyPairs(tfds.core.GeneratorBasedBuilder):
            VERSION = tfds.core.Version("1.0.0")

            def _info(self):
                return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
                    "input": tfds.features.Tensor(shape=(6, 6, 1), dtype=np.uint8),
                    "target": tfds.features.Tensor(shape=(6, 6, 3), dtype=np.uint8),
                    "label": tfds.features.ClassLabel(num_classes=3),
                }), disable_shuffling=True)

            def _split_generators(self, dl_manager):
                return {"train": self._generate_examples(6), "test": self._generate_examples(3)}

            def _generate_examples(self, count):
                for i in range(count):
                    grey = _noise((6, 6, 1))
                    yield i, {"input": grey, "target": np.repeat(255 - grey, 3, axis=-1),
                              "label": i % 3}

        TinyPairs(data_dir=data_dir, file_format="array_record").download_and_prepare(
            download_config=tfds.download.DownloadConfig(try_download_gcs=False))


def test_paired_tfds_dataset_with_default_features_and_labels(tmp_path):
    _tiny_labelled_pairs(tmp_path)
    spec = DataSpec(name="tiny_pairs", split="train", eval_split="test", image_size=6,
                    layout="paired", data_dir=str(tmp_path))
    meta = serve.meta(spec)
    assert meta.num_classes == 3 and meta.image_channels == {"input": 1, "target": 3}
    data = serve.load_split(spec, "test")
    assert list(data["label"]) == [0, 1, 2]
    np.testing.assert_allclose(data["target"], np.repeat(-data["input"], 3, axis=-1),
                               atol=1e-6)  # exact but for float rounding of the scaling
    batches = serve.training_pipeline(spec, global_batch_size=3, num_devices=1, seed=0)
    for batch in _take(batches, 4):
        # Jittered (resized to 7, cropped to 6) alike: inversion survives up to rounding.
        np.testing.assert_allclose(batch["target"][..., :1], -batch["input"], atol=1.01 / 127.5)


@pytest.mark.parametrize("num_threads", [0, 2])
def test_paired_resume_is_exact_across_epochs(tmp_path, num_threads):
    _side_by_side(tmp_path, counts={"train": 10})
    spec = _spec(tmp_path, "paired")
    # 10 // 4 = 2 batches per epoch: saved after 3, the next 3 span epochs 1 and 2.
    batches = _check_resume(spec, 3, 3, global_batch_size=4, num_devices=2, seed=5,
                            num_threads=num_threads, prefetch_batches=2)
    for batch in batches:
        _assert_target_follows_input(batch)


# ----------------------------------------------------------------------- unpaired


def _constant(value, channels=3):
    return np.full((6, 6, channels), value, np.uint8)


def _unpaired_folder(root, sizes={"trainA": 8, "trainB": 12, "testA": 3, "testB": 2}):
    """Each image is one grey level that identifies it: domain A 10 + i, B 100 + i."""
    for split, count in sizes.items():
        base = 10 if split.endswith("A") else 100
        for i in range(count):
            _save(root / split / f"{i:02d}.png", _constant(base + i))


def _ids(images):
    """The grey levels (image ids) of a [..., H, W, C] batch in [-1, 1]."""
    flat = images.reshape(-1, *images.shape[-3:])
    return np.rint((flat[:, 0, 0, 0] + 1) * 127.5).astype(int)


def test_unpaired_domains_each_run_through_their_own_epochs(tmp_path):
    _unpaired_folder(tmp_path)
    spec = _spec(tmp_path, "unpaired", jitter=False, image_size=6)
    meta = serve.meta(spec)
    assert meta.image_channels == {"a": 3, "b": 3} and meta.num_classes is None
    assert meta.num_examples == {"trainA": 8, "trainB": 12, "testA": 3, "testB": 2}
    pipeline = serve.training_pipeline(spec, global_batch_size=4, num_devices=2, seed=0)
    assert pipeline.steps_per_epoch == 3  # the larger domain: 12 // 4
    batches = _take(pipeline, 6)
    assert set(batches[0]) == {"a", "b", "a_label", "b_label"}
    assert batches[0]["a"].shape == (2, 2, 6, 6, 3) and batches[0]["a_label"].shape == (2, 2)
    a = np.concatenate([_ids(b["a"]) for b in batches])
    b = np.concatenate([_ids(b["b"]) for b in batches])
    for epoch in range(3):  # A (8 images) wraps after 2 batches, B after 3
        assert sorted(a[epoch * 8:(epoch + 1) * 8]) == list(range(10, 18))
    for epoch in range(2):
        assert sorted(b[epoch * 12:(epoch + 1) * 12]) == list(range(100, 112))
    assert list(a[:8]) != list(a[8:16]) and list(b[:12]) != list(b[12:])
    held_out = serve.load_split(spec, "test")
    assert sorted(_ids(held_out["a"])) == [10, 11, 12] and len(held_out["b"]) == 2


def test_unpaired_domains_of_equal_size_are_shuffled_independently(tmp_path):
    _unpaired_folder(tmp_path, sizes={"trainA": 16, "trainB": 16})
    spec = _spec(tmp_path, "unpaired", jitter=False, image_size=6)
    batch = next(serve.training_pipeline(spec, global_batch_size=16, num_devices=1, seed=3))
    order_a, order_b = _ids(batch["a"]) - 10, _ids(batch["b"]) - 100
    assert sorted(order_a) == sorted(order_b) == list(range(16))
    assert list(order_a) != list(order_b)


@pytest.mark.parametrize("num_threads", [0, 2])
def test_unpaired_resume_is_exact(tmp_path, num_threads):
    _unpaired_folder(tmp_path)
    spec = _spec(tmp_path, "unpaired", image_size=5)  # jittered
    _check_resume(spec, 4, 4, global_batch_size=4, num_devices=2, seed=2,
                  num_threads=num_threads, prefetch_batches=2)


def test_unpaired_cycle_gan_from_tfds(tmp_path):
    spec = DataSpec(name="cycle_gan/horse2zebra", split="train", eval_split="test",
                    image_size=10, layout="unpaired", data_dir=str(tmp_path))
    with tfds.testing.mock_data(num_examples=6, policy=tfds.testing.MockPolicy.USE_CODE):
        meta = serve.meta(spec)
        batch = next(serve.training_pipeline(spec, global_batch_size=2, num_devices=2, seed=0))
        test = serve.load_split(spec, "test", num=3)
    # cycle_gan's 'label' says A or B, which the split already does: no class labels.
    assert meta.num_classes is None and meta.image_channels == {"a": 3, "b": 3}
    assert batch["a"].shape == batch["b"].shape == (2, 1, 10, 10, 3)
    assert not batch["a_label"].any()
    assert test["a"].shape == test["b"].shape == (3, 10, 10, 3)


def test_domain_split_names():
    assert layouts.domain_split("train", "a") == "trainA"
    assert layouts.domain_split("test[:10]", "b") == "testB[:10]"


# ---------------------------------------------------------------------- captioned


def test_tokenizer_is_deterministic_pads_and_round_trips(tmp_path):
    captions = ["A red seven.", "a BLUE seven, bold", "red red two"]
    tokenizer = Tokenizer.build(captions, max_tokens=5)
    # Most frequent first, ties alphabetical; 0 pads, 1 is an unknown word.
    assert tokenizer.vocabulary == ("<pad>", "<unk>", "red", "a", "seven", "blue", "bold",
                                    "two")
    assert Tokenizer.build(captions[::-1], 5) == tokenizer
    tokens = tokenizer.encode("a red zebra")
    assert tokens.dtype == np.int32 and list(tokens) == [3, 2, 1, 0, 0]
    assert list(tokenizer.encode("red " * 9)) == [2] * 5  # cut to max_tokens
    assert tokenizer.decode(tokenizer.encode("Blue two!")) == "blue two"
    tokenizer.save(tmp_path / "vocab.json")
    assert Tokenizer.load(tmp_path / "vocab.json") == tokenizer


def _captioned_folder(root, counts={"train": 6, "test": 3}, classes=None):
    for split, count in counts.items():
        for i in range(count):
            rel = f"{classes[i % len(classes)]}/{i}" if classes else f"{i}"
            _save(root / split / "images" / f"{rel}.png", _constant(10 + i))
            text = root / split / "text" / f"{rel}.txt"
            text.parent.mkdir(parents=True, exist_ok=True)
            text.write_text(f"image {i} first\n\nimage {i} second caption\n")


def test_captioned_folder_draws_one_caption_per_image_per_epoch(tmp_path):
    _captioned_folder(tmp_path)
    spec = _spec(tmp_path, "captioned", jitter=False, image_size=6, max_tokens=6,
                 vocabulary_file=str(tmp_path / "vocab.json"))
    meta = serve.meta(spec)
    tokenizer = Tokenizer.from_meta(meta)
    assert "caption" in tokenizer.vocabulary and "5" in tokenizer.vocabulary
    assert "8" not in tokenizer.vocabulary  # built from the training split only
    pipeline = serve.training_pipeline(spec, global_batch_size=3, num_devices=1, seed=0)
    drawn = {}
    for batch in _take(pipeline, 16):  # 8 epochs
        assert set(batch) == {"image", "tokens", "label"}
        assert batch["tokens"].shape == (1, 3, 6) and batch["tokens"].dtype == np.int32
        for image_id, tokens in zip(_ids(batch["image"]) - 10, batch["tokens"][0]):
            text = tokenizer.decode(tokens)
            assert text in (f"image {image_id} first", f"image {image_id} second caption")
            drawn.setdefault(image_id, set()).add(text)
    assert all(len(texts) == 2 for texts in drawn.values())  # both captions get drawn
    assert json.loads((tmp_path / "vocab.json").read_text())["vocabulary"] == list(
        tokenizer.vocabulary)
    data = serve.load_split(spec, "test", num=2, seed=1)
    assert data["caption"].dtype.kind == "U" and data["tokens"].shape == (2, 6)
    for caption, tokens in zip(data["caption"], data["tokens"]):
        assert tokenizer.decode(tokens) == caption.lower()
    assert set(serve.held_out_batch(spec, 2, 1)) == {"image", "tokens", "label"}
    _assert_same([data], [serve.load_split(spec, "test", num=2, seed=1)])


def test_captioned_vocabulary_file_is_kept_and_classes_become_labels(tmp_path):
    _captioned_folder(tmp_path, classes=["bird", "flower"])
    vocab = tmp_path / "vocab.json"
    Tokenizer(("<pad>", "<unk>", "image"), 4).save(vocab)
    spec = _spec(tmp_path, "captioned", vocabulary_file=str(vocab), max_tokens=3)
    meta = serve.meta(spec)
    assert meta.vocabulary == ("<pad>", "<unk>", "image") and meta.max_tokens == 3
    assert meta.num_classes == 2
    data = serve.load_split(spec, "train")
    assert list(data["label"]) == [0, 0, 0, 1, 1, 1]  # bird/0 2 4, flower/1 3 5
    assert (data["tokens"][:, 0] == 2).all() and (data["tokens"][:, 1] == 1).all()


def test_captioned_resume_is_exact(tmp_path):
    _captioned_folder(tmp_path)
    _check_resume(_spec(tmp_path, "captioned"), 3, 4, global_batch_size=4, num_devices=1,
                  seed=0)


def _tiny_coco_captions(data_dir):
    """A hand-built dataset with coco_captions' features (image, image/id, captions
    {id, text}) prepared in array_record under the name coco_captions. TFDS's own
    coco_captions builder imports TensorFlow, so mock_data cannot produce it here."""
    with registered.skip_registration():
        class CocoCaptions(tfds.core.GeneratorBasedBuilder):
            VERSION = tfds.core.Version("1.1.0")
            BUILDER_CONFIGS = [tfds.core.BuilderConfig(name="2014")]

            def _info(self):
                return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
                    # Image features need TensorFlow to encode; a zlib Tensor does not.
                    "image": tfds.features.Tensor(shape=(None, None, 3), dtype=np.uint8,
                                                  encoding="zlib"),
                    "image/id": np.int64,
                    "captions": tfds.features.Sequence(
                        {"id": np.int64, "text": tfds.features.Text()}),
                }), disable_shuffling=True)

            def _split_generators(self, dl_manager):
                return {"train": self._generate_examples(5), "val": self._generate_examples(3)}

            def _generate_examples(self, count):
                for i in range(count):
                    yield i, {"image": _constant(10 + i)[: 6 + i], "image/id": i,
                              "captions": {"id": [2 * i, 2 * i + 1],
                                           "text": [f"photo {i}", f"A photo of {i}"]}}

        CocoCaptions(data_dir=data_dir, file_format="array_record").download_and_prepare(
            download_config=tfds.download.DownloadConfig(try_download_gcs=False))


def test_captioned_coco_captions_by_name_without_tensorflow(tmp_path):
    _tiny_coco_captions(tmp_path)
    spec = DataSpec(name="coco_captions", split="train", eval_split="val", image_size=6,
                    layout="captioned", data_dir=str(tmp_path), max_tokens=4, jitter=False)
    meta = serve.meta(spec)
    assert meta.vocabulary[2:4] == ("photo", "a") and meta.num_examples == {"train": 5,
                                                                           "val": 3}
    assert meta.num_classes is None
    data = serve.load_split(spec, "val")
    assert data["image"].shape == (3, 6, 6, 3) and not data["label"].any()
    for i, caption in enumerate(data["caption"]):
        assert caption in (f"photo {i}", f"A photo of {i}")
    batch = next(serve.training_pipeline(spec, global_batch_size=5, num_devices=1, seed=0))
    assert batch["tokens"].shape == (1, 5, 4)


def test_tfds_captions_of_each_record_shape():
    coco = {"captions": {"id": np.array([3, 4]), "text": np.array([b"a cat", b"two cats"],
                                                                  dtype=object)}}
    assert layouts._tfds_captions(coco) == ["a cat", "two cats"]
    plain = {"captions": np.array([b"a bold red seven", b"7, thick, red"], dtype=object)}
    assert layouts._tfds_captions(plain) == ["a bold red seven", "7, thick, red"]
    assert layouts._tfds_captions({"caption": b"one"}) == ["one"]


def test_dataset_meta_round_trips_through_json():
    meta = DatasetMeta(name="folder:x", image_shape=(None, None, 3), num_classes=None,
                       num_examples={"train": 2}, image_channels={"image": 3},
                       vocabulary=("<pad>", "<unk>", "red"), max_tokens=4)
    saved = json.loads(json.dumps(dataclasses.asdict(meta)))  # a run's metadata
    assert DatasetMeta(**saved) == meta


# ------------------------------------------------------------------------- errors


def test_broken_image_names_the_file(tmp_path):
    _image_folder(tmp_path)
    broken = tmp_path / "train" / "cat" / "03.png"
    broken.write_bytes(b"not a png")
    with pytest.raises(FolderError, match=f"Cannot decode the image file {broken}"):
        serve.load_split(_spec(tmp_path, "images"), "train")


def test_broken_first_image_names_the_file_when_reading_the_channels(tmp_path):
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "a.jpg").write_bytes(b"\xff\xd8 truncated")
    with pytest.raises(FolderError, match="a.jpg.*Replace or delete it"):
        serve.meta(_spec(tmp_path, "images"))


def test_odd_width_side_by_side_image_is_named(tmp_path):
    _save(tmp_path / "train" / "odd.png", _noise((8, 15, 3)))
    with pytest.raises(FolderError, match="odd.png is 15 pixels wide, an odd number"):
        serve.load_split(_spec(tmp_path, "paired"), "train")


def test_unmatched_pairs_are_listed(tmp_path):
    for name in ["1", "2", "3"]:
        _save(tmp_path / "A" / "train" / f"{name}.png", _noise((8, 8, 3)))
    for name in ["1", "4"]:
        _save(tmp_path / "B" / "train" / f"{name}.png", _noise((8, 8, 3)))
    with pytest.raises(FolderError, match=r"only in \S*A/train: 2, 3; only in \S*B/train: 4\."):
        serve.meta(_spec(tmp_path, "paired"))


def test_empty_and_missing_split_folders(tmp_path):
    (tmp_path / "train").mkdir()
    with pytest.raises(FolderError, match=r"train \(split 'train'\) holds no image files"):
        serve.meta(_spec(tmp_path, "paired"))
    _save(tmp_path / "trainA" / "x.png", _noise((8, 8, 3)))
    with pytest.raises(FolderError, match=r"trainB .*does not exist; .* has the folders "
                                          r"\['train', 'trainA'\]"):
        serve.meta(_spec(tmp_path, "unpaired"))


def test_missing_caption_file_names_the_image(tmp_path):
    _captioned_folder(tmp_path)
    (tmp_path / "train" / "text" / "4.txt").unlink()
    with pytest.raises(FolderError, match=r"4.png has no caption file: .*4.txt"):
        serve.meta(_spec(tmp_path, "captioned"))


def test_name_that_is_neither_tfds_nor_a_folder(tmp_path):
    with pytest.raises(pipeline_lib.DatasetNotAvailableError,
                       match="names the folder .*nowhere, which does not exist"):
        serve.meta(_spec(tmp_path / "nowhere", "images"))
    _image_folder(tmp_path)
    bare = DataSpec(name=str(tmp_path), split="train", eval_split="test", image_size=8)
    with pytest.raises(pipeline_lib.DatasetNotAvailableError,
                       match=f"name it 'folder:{tmp_path}'"):
        serve.meta(bare)
    with pytest.raises(pipeline_lib.DatasetNotAvailableError, match="not a TFDS dataset"):
        serve.meta(dataclasses.replace(bare, name="no_such_dataset"))


def test_bad_spec_fields():
    with pytest.raises(ValueError, match="direction"):
        DataSpec(name="x", split="train", eval_split="test", image_size=8, direction="AB")
    with pytest.raises(ValueError, match="load_size=6 is smaller"):
        DataSpec(name="x", split="train", eval_split="test", image_size=8, load_size=6)


def test_from_config_reads_the_layout_options():
    import ml_collections

    from genjax.data.spec import from_config

    config = ml_collections.ConfigDict({
        "image_size": 16, "eval": {"split": "val"},
        "dataset": {"name": "folder:~/facades", "split": "train", "data_dir": "",
                    "direction": "BtoA", "load_size": 0, "max_tokens": 12}})
    spec = from_config(config, layout="paired", jitter=False)
    assert (spec.direction, spec.load_size, spec.jitter, spec.max_tokens) == ("BtoA", None,
                                                                             False, 12)
    assert spec.eval_split == "val" and spec.data_dir is None and spec.crop_load_size == 18
    assert spec.folder.is_absolute() and spec.folder.name == "facades"
