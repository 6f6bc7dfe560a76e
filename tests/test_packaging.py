"""A regular (non-editable) install must carry the toy world's weights and the shipped protocols."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(importlib.util.find_spec("setuptools") is None, reason="needs setuptools to build the wheel")
def test_wheel_ships_toy_weights_and_protocols(tmp_path):
    build = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-v",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert build.returncode == 0, build.stdout + build.stderr
    assert "absent from the `packages` configuration" not in build.stdout + build.stderr
    (wheel,) = tmp_path.glob("lfsbench-*.whl")
    shipped = set(zipfile.ZipFile(wheel).namelist())
    expected = {
        f"lfsbench/{p.relative_to(ROOT / 'lfsbench').as_posix()}"
        for p in (ROOT / "lfsbench" / "toy" / "weights").rglob("*")
        if p.is_file()
    }
    expected |= {f"lfsbench/protocols/{p.name}" for p in (ROOT / "protocols").glob("*.yaml")}
    expected |= {f"lfsbench/methods/{p.name}" for p in (ROOT / "methods").glob("*.py")}
    assert len(expected) > 20
    assert expected <= shipped, sorted(expected - shipped)
