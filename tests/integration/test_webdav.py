"""The WebDAV front end with clients no one here wrote (rclone, davfs2, curl),
against a real Orthanc: the same tree as the FUSE mount, exact bytes, the
protocol's answers, and what listings cost."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pydicom
import pytest

from tests.mounting import by_sop_uid, mounted, qido_config
from tests.webdav import SERIES, STUDY, curl, davfs_mounted, propfind, rclone, remote, serving
from trolleyfs.part10 import part10_sop_instance_uid

pytestmark = pytest.mark.integration

FOLDERS = """
[[folders]]
name = "all"
query = {}
views = ["zip"]
"""


def tree_bytes(root: Path) -> dict[str, bytes]:
    """Relative path -> content of every file below ``root``."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def archive_series(sample_files: list[bytes], any_instance: bytes) -> dict[str, bytes]:
    """The archive's objects of the series ``any_instance`` belongs to, by SOP UID."""
    series = pydicom.dcmread(_io(any_instance), stop_before_pixels=True).SeriesInstanceUID
    return {
        part10_sop_instance_uid(b): b
        for b in sample_files
        if pydicom.dcmread(_io(b), stop_before_pixels=True).SeriesInstanceUID == series
    }


def _io(data: bytes):
    import io

    return io.BytesIO(data)


def test_rclone_copies_the_tree_the_fuse_mount_shows(orthanc, sample_files, tmp_path):
    config = qido_config(orthanc, FOLDERS)
    with serving(config, tmp_path) as dav, mounted(config, tmp_path) as m:
        dest = tmp_path / "copy"
        res = rclone("copy", remote(dav.url, "all"), str(dest))
        assert res.returncode == 0, res.stderr
        copied = tree_bytes(dest)
        fuse = tree_bytes(m.path / "all")
    assert copied.keys() == fuse.keys()  # the same relative names
    assert copied == fuse
    archive = by_sop_uid(sample_files)
    assert by_sop_uid(list(copied.values())) == archive  # every object of the archive, byte for byte


def test_davfs2_cp_of_a_series_is_byte_identical(orthanc, sample_files, tmp_path):
    with serving(qido_config(orthanc, FOLDERS), tmp_path) as dav, davfs_mounted(dav.url, tmp_path) as mnt:
        dest = tmp_path / "series"
        res = subprocess.run(["cp", "-r", str(mnt / SERIES), str(dest)], capture_output=True, text=True, timeout=280)
        assert res.returncode == 0, res.stderr
        listed = sorted(p.name for p in (mnt / SERIES).iterdir())
    files = [p.read_bytes() for p in sorted(dest.iterdir())]
    assert sorted(p.name for p in dest.iterdir()) == listed
    assert files and all(files)  # never an empty copy of a file listed without its size
    copied = by_sop_uid(files)
    assert copied == archive_series(sample_files, files[0])


def status(*args: str) -> int:
    res = curl("-o", "/dev/null", "-w", "%{http_code}", *args)
    return int(res.stdout)


@pytest.fixture(scope="module")
def dav(orthanc, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("webdav")
    with serving(qido_config(orthanc, FOLDERS), tmp) as served:
        yield served


def test_propfind_answers_207_with_depth_0_and_1_and_refuses_infinity(dav):
    root = curl("-X", "PROPFIND", "-H", "Depth: 1", dav.url)
    assert (b"207" not in root.stderr and b"<ns0:multistatus" in root.stdout) or b"multistatus" in root.stdout
    assert status("-X", "PROPFIND", "-H", "Depth: 1", dav.url) == 207
    listing = propfind(dav, "", "1")
    assert {"all", "by-uid", "query", "views"} <= set(listing)
    assert propfind(dav, "all", "0").keys() == {"all"}
    assert listing["all"]["resourcetype"] == "collection"
    for depth in (["-H", "Depth: infinity"], []):  # no Depth header means infinity (RFC 4918)
        res = curl("-i", "-X", "PROPFIND", *depth, dav.url)
        assert res.stdout.startswith(b"HTTP/1.1 403"), res.stdout[:200]
        assert b"propfind-finite-depth" in res.stdout


def test_propfind_is_sent_as_it_is_made_and_answers_what_was_asked(dav):
    """A PROPFIND's body is streamed (chunked, no Content-Length), is one
    well-formed multistatus, and answers allprop, propname and named
    properties; a bad body or Depth is a 400 before anything is sent."""
    import xml.etree.ElementTree as ET

    def ask(path: str, body: str | None, depth: str = "1") -> tuple[int, dict[str, str], bytes]:
        with dav.client() as c:
            r = c.request("PROPFIND", dav.href(path), headers={"Depth": depth}, content=body)
        return r.status_code, dict(r.headers), r.content

    code, headers, body = ask(SERIES, None)
    assert code == 207
    assert headers.get("transfer-encoding") == "chunked" and "content-length" not in headers
    assert headers.get("connection", "").lower() != "close"  # the client keeps its connection
    doc = ET.fromstring(body)
    assert doc.tag == "{DAV:}multistatus"
    files = [r for r in doc if (r.findtext("{DAV:}href") or "").endswith(".dcm")]
    assert len(files) == len(doc) - 1 >= 2  # the series itself, then its files
    for resp in files:
        assert int(resp.findtext(".//{DAV:}getcontentlength") or 0) > 128
    names = {
        p.tag
        for p in ET.fromstring(ask(SERIES, '<propfind xmlns="DAV:"><propname/></propfind>', "0")[2]).iter()
        if p.tag.startswith("{DAV:}") and p.text is None and not len(p)
    }
    assert {"{DAV:}resourcetype", "{DAV:}displayname"} <= names
    named = ET.fromstring(ask(SERIES, '<propfind xmlns="DAV:"><prop><displayname/><nosuchprop/></prop></propfind>')[2])
    shown = [(r.findtext(".//{DAV:}displayname"), r.find(".//{DAV:}nosuchprop")) for r in named]
    assert len(shown) == len(doc) and all(name for name, _ in shown) and all(el is not None for _, el in shown)
    assert all(r.find(".//{DAV:}getcontentlength") is None for r in named)  # only what was asked
    assert ask(SERIES, "<propfind xmlns='DAV:'><allprop/><propname/></propfind>")[0] == 400
    assert ask(SERIES, "<not-xml")[0] == 400
    assert ask(SERIES, None, depth="2")[0] == 400
    assert ask(f"{SERIES}/no-such.dcm", None)[0] == 404
    log = dav.log_text()  # WsgiDAV's complaints about a 207 without a length are not errors here
    assert "Content-Length" not in log and "Connection: close" not in log


def test_views_are_listed_with_their_sizes(orthanc, tmp_path):
    """A PROPFIND of views/<folder>/ and of a study's views shows each zip and
    metadata document with its size, the size a GET then sends (a metadata
    document's size was asked from a worker thread, off the loop: 500)."""
    config = qido_config(orthanc, FOLDERS.replace('views = ["zip"]', 'views = ["zip", "metadata"]'))
    with serving(config, tmp_path, name="views") as dav:
        top = propfind(dav, "views/all", "1")
        assert f"views/all/{STUDY}.json" in top and f"views/all/{STUDY}.zip" in top
        inside = propfind(dav, f"views/all/{STUDY}", "1")
        docs = {p: props for p, props in {**top, **inside}.items() if p.endswith((".json", ".zip"))}
        assert len(docs) >= 4
        with dav.client() as c:
            for path, props in docs.items():
                body = c.get(dav.href(path))
                assert body.status_code == 200, path
                assert int(props["getcontentlength"]) == len(body.content) > 0, path


def test_options_says_class_1_read_only(dav):
    for path in ("", SERIES, f"{SERIES}/0001.dcm"):  # names with spaces: the path arrives encoded
        res = curl("-i", "-X", "OPTIONS", dav.href(path))
        head = res.stdout.partition(b"\r\n\r\n")[0].decode()
        assert head.startswith("HTTP/1.1 200"), (path, head)
        assert "\r\nDAV: 1\r\n" in head
        allow = next(h for h in head.split("\r\n") if h.startswith("Allow: "))
        assert set(allow[7:].split(", ")) == {"OPTIONS", "HEAD", "GET", "PROPFIND"}


def test_range_reads_are_exact(dav, sample_files):
    listing = propfind(dav, SERIES, "1")
    name = sorted(p for p in listing if p.endswith(".dcm"))[0]
    url = dav.href(name)
    whole = curl(url).stdout
    assert whole in sample_files
    n = len(whole)
    for spec, expected in [
        ("100-199", whole[100:200]),
        ("0-0", whole[:1]),
        (f"{n - 10}-", whole[n - 10 :]),
        ("-50", whole[-50:]),
        (f"{n - 5}-{n + 100}", whole[n - 5 :]),  # a range past the end is cut at the end
    ]:
        res = curl("-i", "-r", spec, url)
        head, _, body = res.stdout.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 206"), head
        assert body == expected, spec
        assert b"Content-Range: bytes " in head
    assert status("-r", f"{n}-{n + 10}", url) == 416
    heads = curl("-I", url).stdout.decode()
    assert f"Content-Length: {n}" in heads
    assert listing[name]["getcontentlength"] == str(n)


def test_zip_is_streamed_in_ranges(dav, sample_files):
    """A series zip (read in ranges from the core) is whole and exact: every
    member is an archive object; a range of it equals the same bytes of the whole."""
    import io
    import zipfile

    url = dav.href(f"views/all/{STUDY}/001 CT Axial 5mm.zip")
    whole = curl(url).stdout
    with zipfile.ZipFile(io.BytesIO(whole)) as z:
        members = [z.read(i) for i in z.infolist()]
    assert members and all(m in sample_files for m in members)
    assert curl("-r", "1000-300000", url).stdout == whole[1000:300001]


@pytest.mark.parametrize("method", ["PUT", "DELETE", "MKCOL", "MOVE", "COPY", "PROPPATCH", "LOCK", "UNLOCK", "POST"])
def test_every_write_method_is_refused(dav, method):
    before = propfind(dav, SERIES, "1")
    target = dav.href(sorted(p for p in before if p.endswith(".dcm"))[0])
    for url in (target, dav.href(SERIES), dav.href(f"{SERIES}/new.dcm")):
        code = status("-X", method, "-H", f"Destination: {dav.href('all/moved.dcm')}", "--data-binary", "x", url)
        assert code in (403, 405), (method, url, code)
    assert propfind(dav, SERIES, "1") == before  # nothing changed


def test_no_way_out_of_the_tree(dav):
    import socket
    from urllib.parse import urlsplit

    for path in [
        "../../etc/passwd",
        "all/../../../etc/passwd",
        "%2e%2e/%2e%2e/etc/passwd",
        "all/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        "all/..%2f..%2f..%2fetc%2fpasswd",
        "%252e%252e/%252e%252e/etc/passwd",
        "..%5c..%5cetc%5cpasswd",
    ]:
        for method in ("GET", "PROPFIND"):
            res = curl(
                "--path-as-is", "-X", method, "-H", "Depth: 0", "-o", "-", "-w", "\n%{http_code}", dav.url + path
            )
            code = int(res.stdout.rsplit(b"\n", 1)[1])
            assert code in (400, 404), (method, path, code)
            assert b"root:" not in res.stdout
    # an absolute URL in the request line, another host in Host, a Destination elsewhere
    u = urlsplit(dav.url)
    for line, host in [
        ("GET http://evil.example/../../etc/passwd HTTP/1.1", "evil.example"),
        ("GET //etc/passwd HTTP/1.1", "evil.example"),
        ("PROPFIND http://127.0.0.1/../ HTTP/1.1", "127.0.0.1"),
        (f"GET {dav.url}all/ HTTP/1.1", "evil.example"),
    ]:
        with socket.create_connection((u.hostname, u.port), timeout=60) as s:
            s.sendall(f"{line}\r\nHost: {host}\r\nDepth: 0\r\nConnection: close\r\n\r\n".encode())
            answer = b""
            while chunk := s.recv(65536):
                answer += chunk
        assert answer.split(b" ", 2)[1] == b"400", (line, answer[:200])  # absolute forms are for proxies
        assert b"root:" not in answer
    code = status("-X", "COPY", "-H", "Destination: http://evil.example/x", dav.href(SERIES))
    assert code in (403, 405)


def test_twenty_parallel_cold_gets_are_byte_identical(orthanc, sample_files, tmp_path):
    """20 clients at once on a fresh server whose listings fetch nothing
    (``sizes = "known"``): every GET goes to the archive (one series
    readahead, the others joining it), and each body is the archive's object."""
    by_uid = by_sop_uid(sample_files)
    config = qido_config(orthanc, FOLDERS) + '\n[webdav]\nsizes = "known"\n'
    with serving(config, tmp_path, name="cold") as dav:
        files = sorted(p for p in propfind(dav, SERIES, "1") if p.endswith(".dcm"))
        assert dav.stats()["instances_fetched"] == 0  # cold: nothing fetched by the listing
        urls = [dav.href(files[i % len(files)]) for i in range(20)]
        procs = [subprocess.Popen(["curl", "-s", "-S", "-f", u], stdout=subprocess.PIPE) for u in urls]
        bodies = [p.communicate(timeout=120)[0] for p in procs]
        assert all(p.returncode == 0 for p in procs)
        for url, body in zip(urls, bodies, strict=True):
            assert body == by_uid[part10_sop_instance_uid(body)], url
        assert len({part10_sop_instance_uid(b) for b in bodies}) == min(20, len(files))
        assert dav.stats()["instances_fetched"] >= min(20, len(files))
