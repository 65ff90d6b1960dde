"""The views' config keys: ``transfer_syntax`` and ``views`` per folder, their
one-line errors, and the name ``views`` reserved once a folder has views."""

from __future__ import annotations

import pytest

from trolleyfs.config import parse
from trolleyfs.errors import ConfigError

SERVER = """
[servers.pacs]
search   = { protocol = "qido-rs", url = "http://pacs/dicom-web" }
retrieve = { protocol = "wado-rs", url = "http://pacs/dicom-web" }
"""


def folder(extra: str, name: str = "research-ct") -> str:
    return f'[[folders]]\nname = "{name}"\nquery = {{ ModalitiesInStudy = "CT" }}\n{extra}\n'


def test_the_issue_s_example() -> None:
    cfg = parse(SERVER + folder('transfer_syntax = "uncompressed"\nviews = ["metadata", "zip"]'))
    f = cfg.folders[0]
    assert f.transfer_syntax == "1.2.840.10008.1.2.1" and f.views == ("metadata", "zip")


def test_defaults_serve_as_stored_without_views() -> None:
    f = parse(SERVER + folder("")).folders[0]
    assert f.transfer_syntax is None and f.views == ()


@pytest.mark.parametrize(
    ("text", "uid"),
    [
        ("UNCOMPRESSED", "1.2.840.10008.1.2.1"),
        ("1.2.840.10008.1.2", "1.2.840.10008.1.2"),
        ("1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.90"),
        ("as-stored", None),
    ],
)
def test_transfer_syntaxes(text: str, uid: str | None) -> None:
    assert parse(SERVER + folder(f'transfer_syntax = "{text}"')).folders[0].transfer_syntax == uid


@pytest.mark.parametrize(
    ("extra", "key", "words"),
    [
        ('transfer_syntax = "1.2.840.10008.1.2.4.50"', "folders[0].transfer_syntax", "uncompressed"),
        ('transfer_syntax = "jpeg"', "folders[0].transfer_syntax", "not a transfer syntax"),
        ("transfer_syntax = 1", "folders[0].transfer_syntax", "must be a string"),
        ('views = ["zip", "pdf"]', "folders[0].views", "'pdf' is not a view"),
        ('views = "zip"', "folders[0].views", "must be an array"),
    ],
)
def test_mistakes_are_one_line_naming_the_key(extra: str, key: str, words: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse(SERVER + folder(extra), "pacs.toml")
    msg = str(err.value)
    assert msg.startswith(f"pacs.toml: {key}: ") and words in msg and "\n" not in msg


def test_views_is_reserved_only_when_a_folder_has_views() -> None:
    assert parse(SERVER + folder("", name="views")).folders[0].name == "views"
    with pytest.raises(ConfigError, match=r"folders\[1\]\.name: 'views' is reserved when a folder has views"):
        parse(SERVER + folder('views = ["zip"]') + folder("", name="views"), "pacs.toml")


def test_the_analysis_views_of_issue_22() -> None:
    f = parse(SERVER + folder('views = ["nifti", "preview", "metadata", "nifti"]')).folders[0]
    assert f.views == ("nifti", "preview", "metadata")
    with pytest.raises(ConfigError) as err:
        parse(SERVER + folder('views = ["nii"]'), "pacs.toml")
    assert "'nii' is not a view (expected some of: metadata, zip, nifti, preview)" in str(err.value)
