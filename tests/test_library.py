"""The lamp library: names never paths, and `lavalamp lamps` listing good lamps and refusing bad ones."""

import pytest

from lavalamp.daemon.cli import main
from lavalamp.daemon.library import lamp_names, lamp_path
from lavalamp.models.checkpoint import LampLoadError

from .fakes import save_fake_lamp


@pytest.fixture
def library(tmp_path):
    folder = tmp_path / "lamps"
    folder.mkdir()
    save_fake_lamp(folder / "amber.safetensors", name="amber")
    save_fake_lamp(folder / "big.safetensors", name="big", frame_size=128)
    (folder / "garbage.safetensors").write_bytes(b"not a checkpoint at all")
    whole = (folder / "amber.safetensors").read_bytes()
    (folder / "cut.safetensors").write_bytes(whole[: len(whole) // 2])
    (folder / "notes.txt").write_text("not a lamp")
    return folder


def test_the_table_lists_every_readable_lamp_and_names_each_refusal(library, capsys):
    assert main(["lamps", "--library", str(library)]) == 1  # some were refused
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert lines[0].split() == ["name", "frame", "footage", "lamp", "fps", "trained", "size"]
    amber = next(line for line in lines if line.startswith("amber "))
    assert "64x64" in amber and "random weights for tests" in amber and " 5 " in amber
    assert "KiB" in amber or "MiB" in amber
    assert any(line.startswith("big ") and "128x128" in line for line in lines)
    assert "2 lamp(s)" in lines[-1] and "2 refused" in lines[-1]
    assert "garbage: refused: " in err and "not a readable neural-lavalamp checkpoint" in err
    assert "cut: refused: " in err
    assert "notes" not in out + err


def test_a_library_of_good_lamps_exits_0_and_the_config_names_the_folder(library, tmp_path, capsys):
    for bad in ("garbage", "cut"):
        (library / f"{bad}.safetensors").unlink()
    config = tmp_path / "c.yaml"
    config.write_text(f"model:\n  library: {library}\n")
    assert main(["lamps", "--config", str(config)]) == 0
    out, err = capsys.readouterr()
    assert "amber" in out and "big" in out and err == ""


def test_no_library_or_a_missing_folder_is_a_usage_error(tmp_path, capsys):
    assert main(["lamps"]) == 2
    assert "pass --library DIR or set model.library" in capsys.readouterr().err
    assert main(["lamps", "--library", str(tmp_path / "nowhere")]) == 2
    assert "cannot list the library" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["../amber", "/etc/passwd", "a/b", ".hidden", "", "amber.safetensors/.."])
def test_a_lamp_is_chosen_by_name_never_by_path(library, name):
    with pytest.raises(LampLoadError, match="is not a lamp name"):
        lamp_path(library, name)


def test_names_are_the_file_names_without_the_suffix(library):
    assert lamp_names(library) == ["amber", "big", "cut", "garbage"]
    assert lamp_path(library, "amber") == library / "amber.safetensors"
