"""docs/python-api.md runs: every ```python block, in order, in one namespace (a tiny training budget is
swapped in for the page's, and nothing else is changed)."""
from __future__ import annotations

import os
import re
import warnings

import pytest

PAGE = os.path.join(os.path.dirname(__file__), "..", "docs", "python-api.md")
# the page's settings -> a test's: 16-pixel images, 3 training steps of a small encoder on the CPU
TINY = {'image_size=32': 'image_size=16',
        '{"train.epochs": 10}': '{"train.steps": 3, "train.device": "cpu", "train.progress": False, '
                                '"model.encoder.channels": [8, 16]}'}


def test_the_python_api_page_runs(tmp_path, monkeypatch):
    with open(PAGE, encoding="utf-8") as fh:
        page = fh.read()
    blocks = re.findall(r"```python\n(.*?)```", page, flags=re.S)
    assert len(blocks) >= 6
    code = "\n".join(blocks)
    for old, new in TINY.items():
        assert old in code, f"docs/python-api.md no longer has {old!r}; update TINY in this test"
        code = code.replace(old, new)
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        exec(compile(code, PAGE, "exec"), namespace)  # noqa: S102 - our own documentation's code
    assert (tmp_path / "brick.safetensors").is_file()
    det = namespace["det"]
    assert det.threshold_ == namespace["strict"].threshold_ or det.threshold_rule_.alpha == 0.05
    assert namespace["scores"].shape == (len(namespace["y_test"]),)
