"""Each login flow through a real mount: MINT listings and RAD69 reads behind
a Vitrea-style session login and behind a Keycloak-style OAuth2 token
endpoint, with sessions and tokens expiring while files are being read."""

from __future__ import annotations

import os
import subprocess
import time

import pytest

from tests.mounting import TROLLEYFS, by_sop_uid, force_unmount, mounted
from tests.servers.base import SampleIndex
from tests.servers.login import KeycloakTokens, VitreaSessions
from tests.servers.mint import MintServer
from tests.servers.rad69 import Rad69Server

pytestmark = pytest.mark.integration
FOLDER = '[[folders]]\nname = "all"\nquery = {}\n'


@pytest.fixture
def servers(sample_files):
    index = SampleIndex(sample_files)
    mint, rad69 = MintServer(index), Rad69Server(index)
    yield mint, rad69
    for s in (mint, rad69.http):
        if s.thread.is_alive():
            s.stop()


def read_all_exact(m, sample_files) -> int:
    by_uid = by_sop_uid(sample_files)
    files = sorted((m.path / "all").rglob("*.dcm"))
    for f in files:
        assert f.read_bytes() == by_uid[os.getxattr(f, "user.dicom.SOPInstanceUID").decode()]
    return len(files)


def test_vitrea_login_and_relogin_when_sessions_expire(servers, sample_files, tmp_path):
    mint, rad69 = servers
    sessions = VitreaSessions(users={"alice": "wonderland"}, session_uses=15)
    sessions.protect_server(mint)
    sessions.protect_server(rad69.http)
    mint.start()
    rad69.start()
    cfg = f"""
[servers.vitrea]
search   = {{ protocol = "mint", url = "{mint.url}" }}
retrieve = {{ protocol = "rad69", url = "{rad69.url}" }}
auth = {{ type = "vitrea", login_url = "{mint.root_url}{sessions.login_path}", username = "alice", password_env = "TFS_VITREA_PW", realm = "DefaultSystemRealm" }}
{FOLDER}"""
    os.environ["TFS_VITREA_PW"] = "wonderland"
    try:
        with mounted(cfg, tmp_path) as m:
            assert read_all_exact(m, sample_files) == len(sample_files)
            assert sessions.logins >= 2  # the session ran out while reading: logged in again
            assert "wonderland" not in m.log_text()
        # a wrong password: one line at mount, nothing mounted, no login storm
        before = sessions.failed_logins
        os.environ["TFS_VITREA_PW"] = "wrong"
        (tmp_path / "bad.toml").write_text(cfg)
        mnt = tmp_path / "bad"
        mnt.mkdir()
        try:
            res = subprocess.run(
                [*TROLLEYFS, "mount", str(tmp_path / "bad.toml"), str(mnt)], capture_output=True, text=True, timeout=60
            )
            assert res.returncode != 0 and "login" in res.stderr and res.stderr.count("\n") == 1, res.stderr
            assert "wrong" not in res.stderr and not os.path.ismount(mnt)
            assert sessions.failed_logins - before <= 2
        finally:
            force_unmount(mnt)
    finally:
        os.environ.pop("TFS_VITREA_PW", None)


def test_oauth2_tokens_are_fetched_and_refreshed(servers, sample_files, tmp_path):
    mint, rad69 = servers
    tokens = KeycloakTokens(clients={"trolleyfs": "client-s3cret"}, expires_in=2)
    tokens.protect_server(mint)
    tokens.protect_server(rad69.http)
    mint.start()
    rad69.start()
    secret = tmp_path / "secret"
    secret.write_text("client-s3cret\n")
    cfg = f"""
[servers.kc]
search   = {{ protocol = "mint", url = "{mint.url}" }}
retrieve = {{ protocol = "rad69", url = "{rad69.url}" }}
auth = {{ type = "oauth2", token_url = "{mint.root_url}{tokens.token_path}", client_id = "trolleyfs", client_secret_file = "{secret}" }}
{FOLDER}"""
    with mounted(cfg, tmp_path) as m:
        studies = sorted((m.path / "all").iterdir())
        assert len(studies) == 5
        first = tokens.issued
        time.sleep(2.5)  # the token expires
        assert read_all_exact(m, sample_files) == len(sample_files)
        assert tokens.issued > first  # refreshed, not refused
        assert m.stats()["errors"] == {}  # no read was refused: the token was renewed in time or on a 401
        stats_text = (m.path / ".trolleyfs" / "stats.json").read_text()
        assert "client-s3cret" not in m.log_text() and "client-s3cret" not in stats_text
