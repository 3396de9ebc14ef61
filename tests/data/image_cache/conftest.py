"""Fixtures of the image cache tests: a small JPEG folder and stand-ins for the decode."""

from __future__ import annotations

import pytest

from ae_lab.data.image_cache import decode
from tests.helpers.faces import make_plain_jpeg_folder
from tests.helpers.image_cache import SlowDecode


@pytest.fixture
def folder(tmp_path):
    make_plain_jpeg_folder(tmp_path / "src", n=8)
    return tmp_path / "src"


@pytest.fixture
def decodes(monkeypatch):
    """Counts calls of the decode function (builds run in-process with workers=1)."""
    calls = []
    real = decode.decode_image

    def counting(path, crop, size):
        calls.append(path)
        return real(path, crop, size)

    monkeypatch.setattr(decode, "decode_image", counting)
    return calls


@pytest.fixture
def slow_decode(tmp_path, monkeypatch):
    """A decode that takes 0.25 s per image and notes who decodes (see SlowDecode)."""
    slow = SlowDecode(tmp_path / "slow_decode")
    monkeypatch.setattr(decode, "decode_image", slow)
    return slow
