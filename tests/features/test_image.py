import numpy as np
from PIL import Image


def _cos(a, b):
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_lite0_on_real_posters(lite0, posters, tmp_path):
    original = posters[0]
    with Image.open(original) as img:
        w, h = img.size
        resized = img.convert("RGB").resize((int(w * 0.9), int(h * 0.9)), Image.Resampling.LANCZOS)
    resized_path = tmp_path / "resized.png"
    resized.save(resized_path)
    others = posters[1:4]
    feats, mask = lite0.encode([original, resized_path, *others], batch_size=2)
    assert feats.shape == (2 + len(others), 1280) and feats.dtype == np.float32
    assert mask.all() and np.isfinite(feats).all()
    assert np.linalg.norm(feats[0]) > 0
    same = _cos(feats[0], feats[1])
    different = [_cos(feats[0], f) for f in feats[2:]]
    assert same > max(different), (same, different)
    assert same > 0.9


def test_missing_and_corrupt_pictures_are_masked(lite0, posters, tmp_path):
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg")
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(posters[0].read_bytes()[:300])
    text_file = tmp_path / "notes.txt"
    text_file.write_text("hello")
    paths = [None, "", float("nan"), tmp_path / "absent.jpg", corrupt, truncated, text_file, posters[0]]
    feats, mask = lite0.encode(paths)
    assert feats.shape == (len(paths), 1280)
    assert mask.tolist() == [False] * 7 + [True]
    assert not feats[:7].any()
    failed = {i for i, _, _ in lite0.failures}
    assert failed == {3, 4, 5, 6}  # missing values are not failures, unreadable files are


def test_unusual_modes_are_read(lite0, tmp_path):
    paths = []
    for mode, colour in (("RGBA", (255, 0, 0, 128)), ("L", 128), ("P", 3), ("CMYK", (0, 255, 0, 0))):
        path = tmp_path / f"{mode}.{'jpg' if mode == 'CMYK' else 'png'}"
        Image.new(mode, (40, 30), colour).save(path)
        paths.append(path)
    feats, mask = lite0.encode(paths)
    assert mask.all() and np.isfinite(feats).all()


def test_all_missing_loads_no_model(tmp_path):
    from recsys.features import get_encoder

    enc = get_encoder("efficientnet-lite0", device="cpu")
    feats, mask = enc.encode([None, None])
    assert feats.shape == (2, 1280) and not mask.any()
    assert enc._model is None
    assert enc.encode([])[0].shape == (0, 1280)
