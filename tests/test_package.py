import importlib
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_version_and_cheap_import():
    # A fresh interpreter: importing the package must not pull in TensorFlow.
    code = "import sys, detect; print(detect.__version__); print('tensorflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    version, tf_loaded = out.stdout.split()
    assert version.count(".") == 2 and all(p.isdigit() for p in version.split("."))
    assert tf_loaded == "False"


def test_top_level_layout():
    for name in ("pyproject.toml", "README.md", "detect", "configs", "tools", "tests", "weights"):
        assert (ROOT / name).exists(), name
    assert (ROOT / "weights" / "README.md").is_file()


def test_ops_public_api_importable():
    ops = importlib.import_module("detect.ops")
    for name in ops.__all__:
        assert hasattr(ops, name), name


def test_no_tensorflow_addons_dependency():
    text = (ROOT / "pyproject.toml").read_text()
    assert "tensorflow-addons" not in text and "tensorflow_addons" not in text
    for path in (ROOT / "detect").rglob("*.py"):
        assert "tensorflow_addons" not in path.read_text(), path
