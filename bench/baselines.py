"""The baselines trolleyfs is measured against: one raw WADO-RS series
request split into files (the server's ceiling), and dicomtrolley, the
library trolleyfs grew from, downloading the same series."""

from __future__ import annotations

from pathlib import Path

import httpx

from trolleyfs.demo.orthanc import Orthanc
from trolleyfs.multipart import MultipartParser, boundary_of

ACCEPT = 'multipart/related; type="application/dicom"; transfer-syntax=*'


def server_ceiling(orthanc: Orthanc, study: str, series: str, out: Path) -> int:
    """(1) one WADO-RS series request with httpx, split and written as files
    (how many: returned).  Reads 1 MiB at a time, as trolleyfs does, so the
    baseline is no slower than it has to be."""
    from httpcore._sync.http11 import HTTP11Connection

    HTTP11Connection.READ_NUM_BYTES = 1 << 20
    out.mkdir()
    with (
        httpx.Client(timeout=120) as c,
        c.stream("GET", f"{orthanc.dicomweb}/studies/{study}/series/{series}", headers={"Accept": ACCEPT}) as r,
    ):
        r.raise_for_status()
        parser = MultipartParser(boundary_of(r.headers["content-type"]))
        n = 0
        for chunk in r.iter_bytes(1 << 20):
            for part in parser.feed(chunk):
                (out / f"{n:05}.dcm").write_bytes(part.body)
                n += 1
        parser.close()
    return n


def dicomtrolley_download(orthanc: Orthanc, study: str, series: str, out: Path) -> int:
    """(2) the seed library, dicomtrolley 4.1.0, downloading the series by
    WADO-RS (how many files it wrote: returned)."""
    import requests
    from dicomtrolley.core import SeriesReference
    from dicomtrolley.qido_rs import QidoRS
    from dicomtrolley.trolley import Trolley
    from dicomtrolley.wado_rs import WadoRS

    out.mkdir()
    session = requests.Session()
    trolley = Trolley(downloader=WadoRS(session, orthanc.dicomweb), searcher=QidoRS(session, orthanc.dicomweb))
    trolley.download(SeriesReference(study_uid=study, series_uid=series), output_dir=str(out))
    return sum(1 for p in out.rglob("*") if p.is_file())
