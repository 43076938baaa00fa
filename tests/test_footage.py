"""Footage ingestion: every source kind, crop, resize, step, dedupe, split and every bad input."""

import av
import numpy as np
import pytest
from PIL import Image

from lavalamp.train.footage import FootageConfig, FootageError, load_footage


def coloured_frames(count, height=48, width=64):
    """Frame i is a flat colour whose red channel encodes i (10*i)."""
    frames = np.zeros((count, height, width, 3), np.uint8)
    frames[..., 0] = (np.arange(count) * 10)[:, None, None]
    frames[..., 1] = 80
    return frames


def write_npz(path, frames, fps=30.0, **extra):
    np.savez(path, frames=frames, fps=fps, **extra)
    return path


def write_mp4(path, frames, fps=20):
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        stream.options = {"crf": "10"}
        for frame in frames:
            out.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        out.mux(stream.encode())
    return path


def red_index(frames):
    """Recover the index encoded in the red channel of each frame."""
    return np.round(frames[..., 0].reshape(len(frames), -1).mean(1) / 10).astype(int).tolist()


def test_video_is_decoded_at_its_frame_rate(tmp_path):
    source = write_mp4(tmp_path / "clip.mp4", coloured_frames(12))
    footage = load_footage([source], FootageConfig(val_fraction=0))
    assert footage.sequences[0].shape == (12, 64, 64, 3)
    assert footage.fps == pytest.approx(20)
    assert red_index(footage.sequences[0]) == list(range(12))


def test_image_folder_is_read_in_natural_order_at_the_default_fps(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, frame in enumerate(coloured_frames(12)):
        Image.fromarray(frame).save(folder / f"frame{i}.png")
    (folder / "notes.txt").write_text("not an image")
    footage = load_footage([folder], FootageConfig(default_fps=12.5, val_fraction=0))
    assert red_index(footage.sequences[0]) == list(range(12))  # frame2 before frame10
    assert footage.fps == 12.5 and "assumed" in footage.description


def test_npz_keeps_its_fps_and_every_frame(tmp_path):
    """Every frame: the trainer steps the footage itself (tests/test_train.py checks the lamp's
    recorded rate)."""
    source = write_npz(tmp_path / "clip.npz", coloured_frames(10, 64, 64), fps=25.0)
    footage = load_footage([source], FootageConfig(val_fraction=0))
    assert footage.fps == 25.0 and red_index(footage.sequences[0]) == list(range(10))
    assert "clip.npz" in footage.description


def test_crop_box_selects_source_pixels(tmp_path):
    frames = np.zeros((4, 80, 100, 3), np.uint8)
    frames[:, 0:50, 50:100] = (200, 10, 30)
    source = write_npz(tmp_path / "clip.npz", frames)
    footage = load_footage([source], FootageConfig(crop=(50, 0, 100, 50), val_fraction=0))
    assert (footage.sequences[0] == (200, 10, 30)).all()


def test_auto_crop_finds_a_bright_moving_square_on_a_dark_background(tmp_path):
    frames = np.full((20, 120, 160, 3), 12, np.uint8)
    for t in range(20):
        x, y = 60 + t * 24 // 19, 40 + t * 14 // 19
        frames[t, y:y + 16, x:x + 16] = (250, 180, 40)
    source = write_npz(tmp_path / "clip.npz", frames)
    footage = load_footage([source], FootageConfig(auto_crop=True, val_fraction=0))
    x0, y0, x1, y1 = (int(v) for v in footage.description.split("crop (")[1].split(")")[0].split(","))
    assert x1 - x0 == y1 - y0 <= 60  # square and tight
    assert x0 <= 60 and y0 <= 40 and x1 >= 100 and y1 >= 70  # holds the whole path
    assert footage.sequences[0].max() > 200  # the square is in the frames


def test_resize_uses_an_area_filter(tmp_path):
    checker = (np.indices((256, 256)).sum(0) % 2 * 255).astype(np.uint8)
    frames = np.repeat(checker[None, :, :, None], 3, axis=-1).repeat(2, axis=0)
    source = write_npz(tmp_path / "clip.npz", frames)
    footage = load_footage([source], FootageConfig(frame_size=64, val_fraction=0))
    assert footage.sequences[0].shape == (2, 64, 64, 3)
    assert np.abs(footage.sequences[0].astype(int) - 127.5).max() <= 1  # averaged, not sampled


def test_mirror_adds_each_clip_mirrored_as_a_sequence_of_its_own(tmp_path):
    frames = np.zeros((40, 64, 64, 3), np.uint8)
    frames[:, :, :16, 0] = np.arange(40)[:, None, None] * 5  # a left edge that changes over time
    source = write_npz(tmp_path / "clip.npz", frames)
    footage = load_footage([source], FootageConfig(mirror=True, val_fraction=0.25))
    plain, mirrored = footage.sequences
    assert np.array_equal(mirrored, plain[:, :, ::-1]) and mirrored[:, :, -16:, 0].any()
    assert footage.names == ["clip.npz", "clip.npz (mirrored)"]
    assert [len(t) for t in footage.train] == [30, 30] and [len(v) for v in footage.val] == [10, 10]
    assert np.array_equal(footage.val[1][0], plain[30, :, ::-1])  # the same moments held out
    assert "mirrored" in footage.description and footage.fps == 30.0


def test_dedupe_recovers_the_distinct_frames_of_a_2_2_3_2_3_pattern(tmp_path):
    distinct = coloured_frames(10, 64, 64)
    rng = np.random.default_rng(0)
    repeats = np.repeat(distinct, [2, 2, 3, 2, 3] * 2, axis=0).astype(int)
    noisy = np.clip(repeats + rng.integers(-1, 2, repeats.shape), 0, 255).astype(np.uint8)
    source = write_npz(tmp_path / "clip.npz", noisy, fps=60.0)
    footage = load_footage([source], FootageConfig(dedupe_threshold=2.0, val_fraction=0))
    assert red_index(footage.sequences[0]) == list(range(10))
    assert footage.fps == pytest.approx(25.0)
    assert "dedupe kept 10/24" in footage.description


def test_validation_split_is_the_end_of_each_sequence(tmp_path):
    source = write_npz(tmp_path / "clip.npz", coloured_frames(20, 64, 64))
    footage = load_footage([source], FootageConfig(val_fraction=0.25))
    train, val = footage.train[0], footage.val[0]
    assert red_index(train) == list(range(15)) and red_index(val) == list(range(15, 20))


def test_several_sources_stay_separate_sequences(tmp_path):
    a = write_npz(tmp_path / "a.npz", coloured_frames(8, 64, 64))
    b = write_npz(tmp_path / "b.npz", coloured_frames(13, 64, 64)[::-1].copy(), fps=25.0)
    footage = load_footage([a, b], FootageConfig(val_fraction=0.25))
    assert [len(s) for s in footage.sequences] == [8, 13]
    assert footage.names == ["a.npz", "b.npz"] and footage.source_fps == [30.0, 25.0]
    assert [len(s) for s in footage.train] == [6, 10] and [len(s) for s in footage.val] == [2, 3]
    assert red_index(footage.val[1]) == [2, 1, 0]


def _empty_video(tmp):
    (tmp / "empty.mp4").write_bytes(b"")
    return tmp / "empty.mp4", "empty.mp4: the file is empty"


def _garbage_video(tmp):
    (tmp / "noise.mp4").write_bytes(np.random.default_rng(0).bytes(4000))
    return tmp / "noise.mp4", "noise.mp4: not a readable video"


def _text_file(tmp):
    (tmp / "notes.txt").write_text("hello")
    return tmp / "notes.txt", "unsupported file type '.txt'"


def _missing(tmp):
    return tmp / "nowhere.mp4", "nowhere.mp4: not found"


def _npz_without_frames(tmp):
    np.savez(tmp / "x.npz", images=coloured_frames(3))
    return tmp / "x.npz", "x.npz: .npz has no 'frames' array (it holds: images)"


def _npz_float_frames(tmp):
    return write_npz(tmp / "x.npz", coloured_frames(3).astype(np.float32)), "must be (T,H,W,3) uint8"


def _npz_grey_frames(tmp):
    return write_npz(tmp / "x.npz", coloured_frames(3)[..., 0]), "must be (T,H,W,3) uint8"


def _npz_not_a_zip(tmp):
    (tmp / "x.npz").write_bytes(b"not a zip file at all")
    return tmp / "x.npz", "x.npz: not a readable .npz archive"


def _folder_without_images(tmp):
    (tmp / "shots").mkdir()
    (tmp / "shots" / "readme.txt").write_text("nothing")
    return tmp / "shots", "shots: folder holds no images"


def _folder_mixed_sizes(tmp):
    (tmp / "shots").mkdir()
    Image.new("RGB", (32, 32)).save(tmp / "shots" / "a1.png")
    Image.new("RGB", (40, 32)).save(tmp / "shots" / "a2.png")
    return tmp / "shots", "images differ in size: a1.png is 32x32 but a2.png is 40x32"


def _folder_broken_image(tmp):
    (tmp / "shots").mkdir()
    Image.new("RGB", (32, 32)).save(tmp / "shots" / "a1.png")
    (tmp / "shots" / "a2.png").write_bytes(b"\x89PNG broken")
    return tmp / "shots", "a2.png: unreadable image"


@pytest.mark.parametrize("make", [_empty_video, _garbage_video, _text_file, _missing,
                                  _npz_without_frames, _npz_float_frames, _npz_grey_frames,
                                  _npz_not_a_zip, _folder_without_images, _folder_mixed_sizes,
                                  _folder_broken_image])
def test_bad_source_is_refused_with_one_clear_message(tmp_path, make):
    source, message = make(tmp_path)
    good = write_npz(tmp_path / "good.npz", coloured_frames(4))
    with pytest.raises(FootageError) as error:
        load_footage([good, source])
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_clip_shorter_than_a_training_window_is_refused(tmp_path):
    source = write_npz(tmp_path / "short.npz", coloured_frames(30, 64, 64))
    with pytest.raises(FootageError, match=r"short.npz: too short: 30 frames leave 27 for training, "
                                           r"fewer than one training window of 31 frames"):
        load_footage([source], FootageConfig(val_fraction=0.1), min_frames=31)


def test_crop_box_outside_the_frame_is_refused(tmp_path):
    source = write_npz(tmp_path / "clip.npz", coloured_frames(4, 48, 64))
    with pytest.raises(FootageError, match=r"clip.npz: crop box \(10, 10, 80, 40\) lies outside "
                                           r"the 64x48 frame"):
        load_footage([source], FootageConfig(crop=(10, 10, 80, 40)))


def test_bad_config_values_are_refused():
    with pytest.raises(ValueError, match="frame_size must be one of"):
        FootageConfig(frame_size=100)
