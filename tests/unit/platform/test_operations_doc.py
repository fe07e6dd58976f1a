"""docs/operations.md's generated sections say what the code says."""

from __future__ import annotations

import pytest

from qastream_shared import opsdoc


@pytest.mark.parametrize("name", sorted(opsdoc.SECTIONS))
def test_generated_section_matches_the_code(name):
    text = opsdoc.DOCUMENT.read_text()
    assert opsdoc.render(text, name) == text, f"run `qa docs {name} --write` and commit docs/operations.md"
