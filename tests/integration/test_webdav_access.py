"""The WebDAV front end's access rules and costs, against a real Orthanc: users
and passwords (never logged), TLS, no address beyond loopback without them,
desktop probes that cost no request, listings that fetch no image, a slow
archive read that stalls nobody else, and a clean stop."""

from __future__ import annotations

import signal
import subprocess
import threading

import httpx
import pytest

from tests.mounting import TROLLEYFS, by_sop_uid, qido_config, wait_for
from tests.servers.proxy import FaultProxy
from tests.webdav import SERIES, STUDY, curl, propfind, rclone, remote, self_signed, serving, stop
from trolleyfs.demo.orthanc import free_port

pytestmark = pytest.mark.integration

FOLDERS = """
[[folders]]
name = "all"
query = {}
"""
PASSWORD = "S3cret-Pw-7f1c"  # distinctive: the logs are searched for it
WRONG = "Wr0ng-Pw-99aa"
USERS = '\n[webdav]\nusers = { alice = { password_env = "TFS_TEST_ALICE_PW" } }\n'
ENV = {"TFS_TEST_ALICE_PW": PASSWORD}


def rclone_pass(password: str) -> str:
    res = rclone("obscure", password)
    assert res.returncode == 0, res.stderr
    return res.stdout.strip()


def test_a_wrong_password_reads_nothing_and_no_password_is_logged(orthanc, sample_files, tmp_path):
    config = qido_config(orthanc, FOLDERS) + USERS
    with serving(config, tmp_path, env=ENV, auth=("alice", PASSWORD)) as dav:
        right = dav.requests()
        file_url = dav.href(f"{SERIES}/0001.dcm")
        for auth in [None, ("alice", WRONG), ("mallory", PASSWORD), ("alice", "")]:
            with httpx.Client(auth=auth, timeout=60) as c:
                for method, url in [
                    ("PROPFIND", dav.url),
                    ("GET", file_url),
                    ("GET", dav.url + ".trolleyfs/stats.json"),
                ]:
                    r = c.request(method, url, headers={"Depth": "1"})
                    assert r.status_code == 401, (auth, method, url)
                    assert r.headers["www-authenticate"].startswith("Basic ")
                    assert b"DICM" not in r.content and b"all" not in r.content
        # a header that is not Basic's user:password is 401 too, not a server error
        for header in ["Basic !!!notbase64", "Basic " + "YWxpY2U=", "Digest username=alice"]:
            r = httpx.get(file_url, headers={"Authorization": header}, timeout=60)
            assert r.status_code == 401, header
        res = rclone(
            "copy", f":webdav,url='{dav.url}',user=alice,pass={rclone_pass(WRONG)}:{SERIES}", str(tmp_path / "no")
        )
        assert res.returncode != 0
        assert not (tmp_path / "no").exists() or not any((tmp_path / "no").rglob("*.dcm"))
        assert dav.requests() == right  # nothing was asked of the archive for them
        # the right password reads
        good = f":webdav,url='{dav.url}',user=alice,pass={rclone_pass(PASSWORD)}:{SERIES}"
        res = rclone("copy", good, str(tmp_path / "yes"))
        assert res.returncode == 0, res.stderr
        copied = [p.read_bytes() for p in (tmp_path / "yes").iterdir()]
        assert copied and by_sop_uid(copied).items() <= by_sop_uid(sample_files).items()
        log = dav.log_text()
    assert "alice" in log  # the user is logged ...
    for secret in (PASSWORD, WRONG, rclone_pass(PASSWORD)):
        assert secret not in log  # ... never a password


def test_tls_with_a_self_signed_certificate(orthanc, sample_files, tmp_path):
    cert, key = self_signed(tmp_path)
    config = qido_config(orthanc, FOLDERS) + USERS + f'tls_cert = "{cert}"\ntls_key = "{key}"\n'
    with serving(config, tmp_path, env=ENV, auth=("alice", PASSWORD), tls_ca=str(cert)) as dav:
        assert dav.url.startswith("https://")
        listing = curl("--cacert", str(cert), "-u", f"alice:{PASSWORD}", "-X", "PROPFIND", "-H", "Depth: 1", dav.url)
        assert listing.returncode == 0 and b"multistatus" in listing.stdout
        assert curl("--cacert", str(cert), dav.url).returncode == 0  # TLS works; no password: 401
        plain = curl("-o", "/dev/null", "-w", "%{http_code}", dav.url.replace("https://", "http://"))
        assert plain.stdout in (b"000", b"400")  # plain HTTP to the TLS port reads nothing
        src = f":webdav,url='{dav.url}',user=alice,pass={rclone_pass(PASSWORD)}:{SERIES}"
        res = rclone("copy", "--ca-cert", str(cert), src, str(tmp_path / "copy"))
        assert res.returncode == 0, res.stderr
    copied = [p.read_bytes() for p in (tmp_path / "copy").iterdir()]
    assert copied and by_sop_uid(copied).items() <= by_sop_uid(sample_files).items()


def test_no_address_beyond_loopback_without_tls_and_users(orthanc, tmp_path):
    cfg = tmp_path / "open.toml"
    cfg.write_text(qido_config(orthanc, FOLDERS))
    cfg.chmod(0o600)
    port = free_port()
    res = subprocess.run(
        [*TROLLEYFS, "webdav", "--listen", f"0.0.0.0:{port}", str(cfg)], capture_output=True, text=True, timeout=120
    )
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "refusing to listen on 0.0.0.0" in lines[0], res.stderr
    assert "--allow-insecure-remote" in lines[0]
    # when told so, it serves, and says what it does
    with serving(
        qido_config(orthanc, FOLDERS), tmp_path, "--allow-insecure-remote", host="0.0.0.0", name="open"
    ) as dav:
        assert propfind(dav, "all", "0")
        assert "as told (--allow-insecure-remote)" in dav.log_text()


def test_desktop_probes_cost_no_request(orthanc, tmp_path):
    with serving(qido_config(orthanc, FOLDERS), tmp_path) as dav:
        before = dav.requests()
        probes = [
            ".DS_Store",
            "._all",
            "desktop.ini",
            "Thumbs.db",
            "all/.DS_Store",
            f"all/._{STUDY}",
            "all/desktop.ini",
            f"all/{STUDY}/.DS_Store",  # below a folder never listed
            f"all/{STUDY}/Thumbs.db",
            f"{SERIES}/._0001.dcm",
            f"{SERIES}/desktop.ini",
            f"{SERIES}/.localized",
            "by-uid/.hidden",
            "views/.metadata_never_index",
        ]
        with dav.client() as c:
            for p in probes:
                for method in ("PROPFIND", "GET", "HEAD"):
                    r = c.request(method, dav.href(p), headers={"Depth": "0"})
                    assert r.status_code == 404, (method, p, r.status_code)
            assert dav.requests() == before
            propfind(dav, SERIES, "1")  # now the folders are listed: probes stay free
            listed = dav.requests()
            for p in probes:
                assert c.request("PROPFIND", dav.href(p), headers={"Depth": "0"}).status_code == 404
        assert dav.requests() == listed


@pytest.mark.parametrize("sizes", ["fetch", "known"])
def test_what_a_listing_costs(orthanc, sample_files, tmp_path, sizes):
    """Folders and studies list without fetching an image; a series lists with
    the sizes of its files (fetched, as ``ls -l`` on the mount) or, with
    ``sizes = "known"``, without them and without a fetch."""
    config = qido_config(orthanc, FOLDERS) + f'\n[webdav]\nsizes = "{sizes}"\n'
    with serving(config, tmp_path) as dav:
        propfind(dav, "all", "1")
        propfind(dav, f"all/{STUDY}", "1")
        assert dav.stats()["instances_fetched"] == 0
        files = {p: props for p, props in propfind(dav, SERIES, "1").items() if p.endswith(".dcm")}
        assert files
        if sizes == "known":
            assert all("getcontentlength" not in props for props in files.values())
            assert dav.stats()["instances_fetched"] == 0
            res = rclone("copy", "--ignore-size", remote(dav.url, SERIES), str(tmp_path / "copy"))
            assert res.returncode == 0, res.stderr
        else:
            with dav.client() as c:
                for p, props in files.items():
                    assert int(props["getcontentlength"]) == len(c.get(dav.href(p)).content)
            res = rclone("copy", remote(dav.url, SERIES), str(tmp_path / "copy"))
            assert res.returncode == 0, res.stderr
    copied = [p.read_bytes() for p in (tmp_path / "copy").iterdir()]
    assert len(copied) == len(files)
    assert by_sop_uid(copied).items() <= by_sop_uid(sample_files).items()


def test_a_slow_archive_read_stalls_no_other_client(orthanc, sample_files, tmp_path):
    with FaultProxy(orthanc.dicomweb) as proxy:
        config = qido_config(orthanc, FOLDERS).replace(orthanc.dicomweb, proxy.url) + '\n[webdav]\nsizes = "known"\n'
        with serving(config, tmp_path) as dav:
            names = sorted(p for p in propfind(dav, SERIES, "1") if p.endswith(".dcm"))
            others = sorted(p for p in propfind(dav, "all", "1") if p not in ("all", f"all/{STUDY}"))
            # every retrieve (no query string) of this series waits until reset()
            proxy.match_re = r"/series/[^/?]+(/instances/[^/?]+)?$"
            proxy.delay = 250.0
            slow: dict[str, bytes] = {}

            def read() -> None:
                with dav.client() as c:
                    slow["body"] = c.get(dav.href(names[0])).content

            t = threading.Thread(target=read)
            t.start()
            try:
                wait_for(lambda: proxy.active >= 1, "the slow read to reach the archive")
                proxy.match_re = r"^$"  # later requests pass
                asked = proxy.count()
                for study in others:  # other clients: listings the archive is asked for answer meanwhile
                    assert len(propfind(dav, study, "1")) > 1
                assert dav.stats()["requests"]
                assert proxy.count() > asked
                assert t.is_alive() and "body" not in slow
            finally:
                proxy.reset()
                t.join(120)
            assert slow["body"] in sample_files


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_it_cleanly(orthanc, tmp_path, sig):
    with serving(qido_config(orthanc, FOLDERS), tmp_path) as dav:
        assert propfind(dav, "all", "1")
        dav.proc.send_signal(sig)
        assert dav.proc.wait(60) == 0
        assert stop(dav.proc) == 0
        log = dav.log_text()
    assert f"{signal.Signals(sig).name}: stopping" in log
    assert "stopped serving" in log
    assert "Traceback" not in log
