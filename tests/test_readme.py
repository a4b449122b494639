"""Every Python block of README.md runs as pasted, top to bottom in one namespace (a later block
may use what an earlier one defined, as a reader pasting them in order would)."""

import os
import re
import shutil

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def python_blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M)


@pytest.mark.slow
def test_readme_python_blocks_run(monkeypatch):
    with open(os.path.join(ROOT, "README.md")) as f:
        blocks = python_blocks(f.read())
    assert len(blocks) >= 6
    monkeypatch.chdir(ROOT)
    shutil.rmtree("/tmp/generative_readme", ignore_errors=True)  # the blocks' runs start fresh
    namespace = {"__name__": "readme"}
    for index, block in enumerate(blocks):
        try:
            exec(compile(block, f"README.md python block {index}", "exec"), namespace)
        except Exception as error:
            raise AssertionError(f"README python block {index} failed:\n{block}") from error
