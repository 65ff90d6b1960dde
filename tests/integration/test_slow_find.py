"""A large C-FIND from a slow SCP, listed through a real mount: deadlines bound
silence, not progress.

The SCP (:mod:`tests.servers.slowfind`) answers 20,000 studies with short
pauses that alone add up to several times the server's ``timeout`` (and more
than the FUSE operation's own deadline), while no single pause comes near it:
``ls`` shows every study.  The same SCP with one pause longer than
``timeout`` fails the listing with EIO and a log line naming the server."""

from __future__ import annotations

import re
import subprocess

import pytest

from tests.mounting import PROCESS_WAIT_S, mounted
from tests.servers.slowfind import SlowFind

pytestmark = pytest.mark.integration

TIMEOUT = 3.0  # the server's timeout in the config
RETRIES = 0  # one attempt: the FUSE operation's deadline is then TIMEOUT * 2
ROWS = 20_000


def config(scp: SlowFind) -> str:
    ae = f'host = "{scp.host}", port = {scp.port}, called_aet = "{scp.aet}"'
    return f"""
[servers.slow]
search   = {{ protocol = "dicom-qr", {ae} }}
retrieve = {{ protocol = "c-get", {ae} }}
timeout = {TIMEOUT:g}
retries = {RETRIES}

[[folders]]
name = "all"
limit = 50000

[names]
study = "{{PatientName}}"
"""


def ls(path) -> subprocess.CompletedProcess[str]:
    # generous: only a broken run comes near it (a healthy one takes seconds)
    return subprocess.run(["ls", "-1", str(path)], capture_output=True, text=True, timeout=PROCESS_WAIT_S * 2)


@pytest.mark.timeout(1200)  # 20,000 rows cost pynetdicom ~1 ms each on both ends: minutes on a slow machine
def test_a_slow_20000_row_answer_lists_completely(tmp_path) -> None:
    with SlowFind(rows=ROWS, every=200, pause=0.1) as scp:
        # what makes this answer slow, by construction (not measured): pauses
        # that add up to more than three times the timeout, and to more than
        # the FUSE operation's deadline, none of them longer than a tenth of it
        assert scp.total_pause() >= 3 * TIMEOUT > TIMEOUT * (RETRIES + 2)
        assert scp.longest_pause() <= TIMEOUT / 10
        with mounted(config(scp), tmp_path) as m:
            out = ls(m.path / "all")
            assert out.returncode == 0, out.stderr + m.log_text()[-3000:]
            listed = out.stdout.splitlines()
            assert len(listed) == ROWS
            # the template names each study after its patient: each one once
            names = sorted(re.sub(r"[^A-Z0-9]", "", n) for n in listed)
            assert names == sorted(re.sub(r"[^A-Z0-9]", "", n) for n in scp.patient_names())
            assert scp.answers == 1  # the listing's C-FIND ran to its end (the pre-flight's was cancelled)


def test_a_silence_longer_than_the_timeout_is_eio_with_a_log_line(tmp_path) -> None:
    with (
        SlowFind(rows=500, every=100, pause=0.01, gap=3 * TIMEOUT, gap_after=250) as scp,
        mounted(config(scp), tmp_path) as m,
    ):
        out = ls(m.path / "all")
        assert out.returncode != 0
        assert "Input/output error" in out.stderr
        log = m.log_text()
        where = f"{scp.aet}@{scp.host}:{scp.port}"
        line = next((x for x in log.splitlines() if where in x and f"{TIMEOUT:g} s" in x), None)
        assert line is not None, log[-3000:]
        # it names the folder's search, the server and the silence (not a cut-off answer)
        assert "opendir failed: slow: study search: no answer from" in line and "had begun to answer" in line, line
        assert "Traceback" not in log
        assert scp.answers == 0  # the answer was cut off, never finished
