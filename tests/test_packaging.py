"""Packaging: the wheel holds lavalamp.{daemon,models,train} and nothing generic; layers stay apart."""

import ast
import configparser
import importlib
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CODE_FOLDERS = ("daemon", "models", "train")
ALLOWED = {"daemon": {"models"}, "train": {"models"}, "models": set()}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(out),
                    str(ROOT)], check=True, capture_output=True, timeout=300)
    (path,) = out.glob("neural_lavalamp-*.whl")
    return path


@pytest.fixture(scope="module")
def wheel_names(wheel):
    with zipfile.ZipFile(wheel) as zf:
        return set(zf.namelist())


@pytest.mark.slow
def test_wheel_holds_only_the_lavalamp_namespace(wheel_names):
    tops = {name.split("/")[0] for name in wheel_names}
    assert tops == {"lavalamp", next(t for t in tops if t.endswith(".dist-info"))}, tops
    assert not any(n.startswith(("daemon/", "models/", "train/", "tests/")) for n in wheel_names)


@pytest.mark.slow
def test_wheel_holds_every_module(wheel_names):
    for folder in CODE_FOLDERS:
        for py in (ROOT / folder).rglob("*.py"):
            name = f"lavalamp/{folder}/{py.relative_to(ROOT / folder).as_posix()}"
            assert name in wheel_names, f"{name} missing from the wheel"


@pytest.mark.slow
def test_wheel_ships_the_default_lamp(wheel_names):
    assert "lavalamp/models/default_lamp.safetensors" in wheel_names


@pytest.mark.slow
def test_wheel_ships_the_control_page(wheel_names):
    assert "lavalamp/daemon/control_page.html" in wheel_names


@pytest.mark.slow
def test_wheel_declares_the_console_script(wheel, wheel_names, capsys):
    """The wheel's `lavalamp` script points at the CLI's main, which answers --help."""
    (name,) = [n for n in wheel_names if n.endswith(".dist-info/entry_points.txt")]
    entry_points = configparser.ConfigParser()
    with zipfile.ZipFile(wheel) as zf:
        entry_points.read_string(zf.read(name).decode())
    assert dict(entry_points["console_scripts"]) == {"lavalamp": "lavalamp.daemon.cli:main"}
    module, _, function = entry_points["console_scripts"]["lavalamp"].partition(":")
    main = getattr(importlib.import_module(module), function)
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.startswith("usage: lavalamp")


def test_code_folders_are_flat():
    """Subfolders would be importable in an editable install yet missing from the wheel."""
    for folder in CODE_FOLDERS:
        subdirs = [p for p in (ROOT / folder).iterdir() if p.is_dir() and p.name != "__pycache__"]
        assert not subdirs, f"{folder}/ has subfolders {subdirs}: list them in pyproject packages"


def imported_layers(path: Path) -> set[str]:
    layers = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
            [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else []
        for name in names:
            parts = name.split(".")
            if parts[0] == "lavalamp" and len(parts) > 1:
                layers.add(parts[1])
            if parts[0] in CODE_FOLDERS:
                raise AssertionError(f"{path}: bare import of {name!r}; use lavalamp.{name}")
    return layers


def test_dependency_direction():
    for folder, allowed in ALLOWED.items():
        for py in (ROOT / folder).rglob("*.py"):
            wrong = imported_layers(py) - allowed - {folder}
            assert not wrong, f"{py.relative_to(ROOT)} imports lavalamp.{wrong}: not allowed"


def test_the_readme_layout_names_only_files_that_exist_and_every_code_folder():
    readme = (ROOT / "README.md").read_text()
    layout = readme.split("## Layout\n\n```\n", 1)[1].split("```", 1)[0]
    folder, named = None, []
    for line in layout.splitlines():
        if not line.startswith(" "):
            folder = line.split()[0].rstrip("/")
        named += [(folder, name) for name in re.findall(r"(?<![\w-])([\w-]+\.(?:py|sh|c|yaml))\b", line)]
    assert len(named) > 10
    for folder, name in named:  # in its folder, or at the top (config.yaml)
        assert (ROOT / folder / name).exists() or (ROOT / name).exists(), \
            f"README's layout names {folder}/{name}, which does not exist"
    folders = {line.split()[0].rstrip("/") for line in layout.splitlines() if not line.startswith(" ")}
    assert {"daemon", "models", "train", "deploy", "tests", "benchmarks", "docs"} <= folders
