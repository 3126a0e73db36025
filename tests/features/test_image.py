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


def test_pictures_over_the_pixel_cap_are_masked_before_decoding(tmp_path, monkeypatch):
    import warnings

    import pytest

    from recsys.data import pictures
    from recsys.data.pictures import PictureTooLarge
    from recsys.features.image import load_rgb
    from tests.conftest import huge_png

    bomb, big, small = tmp_path / "bomb.png", tmp_path / "big.png", tmp_path / "small.png"
    bomb.write_bytes(huge_png(30000, 30000))  # PIL itself refuses it on open
    big.write_bytes(huge_png(12000, 12000))  # PIL only warns; decoding would take ~1 GB
    small.write_bytes(huge_png(64, 48))
    decoded = []
    from PIL import ImageFile

    original_load = ImageFile.ImageFile.load
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: decoded.append(self.size) or original_load(self))
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)  # a warning that escaped would fail here
        with pytest.raises(PictureTooLarge, match=r"bomb\.png is 900 megapixels, over the limit of 40 megapixels"):
            load_rgb(bomb)
        with pytest.raises(PictureTooLarge, match=r"big\.png is 12000x12000 pixels \(144 megapixels\)"):
            load_rgb(big)
    assert load_rgb(small).size == (64, 48)
    monkeypatch.setattr(pictures, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(PictureTooLarge, match=r"small\.png is 64x48 pixels \(3,072 pixels\), over the limit of 1,000"):
        load_rgb(small)
    assert decoded == [(64, 48)]  # only the small picture was ever decoded


def test_the_encoder_masks_pictures_over_the_cap(lite0, tmp_path):
    from tests.conftest import huge_png

    bomb, ok = tmp_path / "bomb.png", tmp_path / "ok.png"
    bomb.write_bytes(huge_png(30000, 30000))
    Image.new("RGB", (40, 30), (200, 10, 10)).save(ok)
    feats, mask = lite0.encode([bomb, ok])
    assert mask.tolist() == [False, True] and not feats[0].any()
    [(index, path, reason)] = lite0.failures
    assert index == 0 and path == str(bomb) and "PictureTooLarge" in reason and "900 megapixels" in reason
