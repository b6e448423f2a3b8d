"""The package's layers, one way down: the import-linter contracts of pyproject.toml hold.

grimp, which import-linter builds its graph with, reads the imports inside functions too, so an import
moved into a function cannot hide a circle or an upward import from these contracts.
"""

from pathlib import Path

import pytest

importlinter_cli = pytest.importorskip("importlinter.cli", reason="the test extra installs import-linter")

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"


def test_the_layer_and_no_circle_contracts_hold(capsys):
    code = importlinter_cli.lint_imports(config_filename=str(PYPROJECT), no_cache=True)
    out = capsys.readouterr().out
    assert code == 0, out
    assert "2 kept, 0 broken" in out
