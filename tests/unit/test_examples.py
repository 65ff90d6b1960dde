"""Every config in examples/ passes the config validation of ``trolleyfs
check`` (its loader, :func:`trolleyfs.config.load`, with the secrets they
name taken from the environment)."""

from __future__ import annotations

from pathlib import Path

import pytest

from trolleyfs.config import Config, load

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples").glob("*.toml"))
SECRETS = ("PACS_PASSWORD", "VITREA_PW", "PACS_TOKEN", "REDIS_PASSWORD")


@pytest.fixture(autouse=True)
def secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in SECRETS:
        monkeypatch.setenv(var, "from-the-environment")


def test_there_are_the_four_examples() -> None:
    assert [p.stem for p in EXAMPLES] == ["cluster-node", "orthanc-dicomweb", "pacs-dimse-cmove", "vitrea-mint-rad69"]


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_each_example_loads(path: Path) -> None:
    cfg = load(path)
    assert isinstance(cfg, Config) and cfg.servers and cfg.folders
    assert cfg.warnings == ()  # no secret inline, nothing to warn about
