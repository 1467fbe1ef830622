"""Every setting is documented in the README with its CDS_ name."""

from pathlib import Path

from cds_service.settings import Settings

README = Path(__file__).resolve().parent.parent / "README.md"


def test_every_setting_is_in_the_readme() -> None:
    text = README.read_text()
    missing = [f"CDS_{name.upper()}" for name in Settings.model_fields if f"`CDS_{name.upper()}`" not in text]
    assert missing == []
