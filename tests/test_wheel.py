"""The wheel carries the knowledge and the migrations: the service runs without a checkout."""

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_wheel_contains_cards_and_loads_them_from_the_package(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(tmp_path / "dist"), str(ROOT)],
        check=True, capture_output=True, timeout=300,
    )
    (wheel,) = (tmp_path / "dist").glob("b12_cds-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "cds_service/cards/rule.json" in names
    assert "cds_service/cards/valuesets/myalgia.json" in names
    assert any(n.startswith("cds_service/migrations/versions/") for n in names)
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    probe = (
        "from cds_service.knowledge import default_cards_dir, load_knowledge;"
        "d = default_cards_dir(); k = load_knowledge(); print(d); print(k.version)"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"},
        check=True, capture_output=True, text=True, timeout=60,
    ).stdout.split()
    assert out[0] == str(site / "cds_service" / "cards")
    assert out[1].startswith("2026")
