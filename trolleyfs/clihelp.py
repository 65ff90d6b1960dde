"""The words of ``trolleyfs --help`` and of each command's ``--help``: what
it does, examples, exit codes (argparse prints them as written)."""

from __future__ import annotations

DOCS = "docs/ in the source tree (README.md: where to start)"

MAIN = """\
A PACS (a hospital's image archive) as a read-only drive: saved queries
become folders; studies, series and instances become directories and .dcm
files that any DICOM viewer, cp, rsync, dcm2niix or Python can open."""

MAIN_EPILOG = f"""\
examples:
  trolleyfs check pacs.toml                 is the config right, do the servers answer?
  trolleyfs mount pacs.toml /mnt/pacs       mount; returns once the mount answers
  trolleyfs prefetch /mnt/pacs/recent-ct    warm the caches (with a progress bar)
  trolleyfs unmount /mnt/pacs
  trolleyfs demo                            a local Orthanc with generated studies, mounted

`trolleyfs COMMAND --help` says more about each command.  Documentation:
{DOCS}."""

MOUNT = """\
Mount the folders of CONFIG at MOUNTPOINT.  Before mounting, each server is
asked for one study and one of its instances is read: a wrong URL, path or
password fails here, in one line, and nothing is mounted.  A server that
cannot be reached (refused, timed out, 5xx), whose listings the disk cache
keeps, is mounted offline with a warning.  Without -f it goes to the
background once the mount answers, logging to syslog, or (where there is
none) to a file it names; under systemd to the journal."""

MOUNT_EPILOG = """\
examples:
  trolleyfs mount pacs.toml /mnt/pacs
  trolleyfs mount -f --log-level debug pacs.toml /mnt/pacs    in the foreground; Ctrl-C unmounts
  trolleyfs mount -o allow_other,nonempty pacs.toml /mnt/pacs

mount options (-o, comma separated): allow_other, allow_root, auto_unmount,
fsname=NAME, nonempty (mount over a directory that holds files: they are
hidden while mounted); fstab words (_netdev, nofail, ro, noauto, x-*) are
accepted and ignored; rw is refused.

exit codes:
  0  mounted (in the foreground: unmounted cleanly)
  1  a server failed its probe, or the mount failed
  2  a mistake in the config or on the command line (a mount point that is
     missing, a file, not empty, or already mounted)"""

UNMOUNT = "Unmount a trolleyfs mount (as fusermount3 -u does); its process then exits."

UNMOUNT_EPILOG = """\
examples:
  trolleyfs unmount /mnt/pacs
  trolleyfs unmount -z /mnt/pacs    a program still uses it: detach now, finish when it lets go

exit codes:
  0  unmounted
  2  nothing mounted there, or busy (then try -z)"""

CHECK = """\
Validate CONFIG, then probe what a mount would use: each server's search (a
one-study search) and retrieve (an instance of that study, found by listing
its series, read), and the shared cache tier.  One row per probe:
  ok       it ran and passed
  FAILED   it ran and failed (the row says why, with a hint for common mistakes)
  skipped  it could not run (the search failed, or found nothing to read)
  offline  the server cannot be reached, but the disk cache keeps its
           listings: a mount serves it offline"""

CHECK_EPILOG = """\
examples:
  trolleyfs check pacs.toml

exit codes:
  0  every probe ran and passed
  1  a probe failed, or a server is offline
  2  a mistake in the config (one line: file, key, problem)
  3  nothing failed, but a probe was skipped (not everything is proven)"""

PREFETCH = """\
Read everything under each PATH through the mount, so that its caches (and,
with disk_dir, the disk cache) hold it; a bar on a terminal, plain lines
otherwise.  From a mount's root only its folders are walked (by-uid/,
by-accession/, by-patient/, query/ and views/ when named); each instance is
read and counted once.  With --check nothing is fetched: it counts what a
read would take from the caches."""

PREFETCH_EPILOG = """\
examples:
  trolleyfs prefetch /mnt/pacs/recent-ct
  trolleyfs prefetch --check /mnt/pacs          before going offline: is everything on disk?
  trolleyfs prefetch -j 8 /mnt/pacs/by-accession/A1001

exit codes:
  0    all read (with --check: all cached)
  1    a file or directory failed (with --check: something is not cached)
  2    a bad argument (a PATH outside a trolleyfs mount, for one)
  130  stopped by Ctrl-C"""

WEBDAV = """\
Serve the tree of CONFIG over WebDAV, in the foreground, until Ctrl-C or
SIGTERM: for desktops and machines without FUSE.  See docs/webdav.md."""

WEBDAV_EPILOG = """\
examples:
  trolleyfs webdav pacs.toml                             on 127.0.0.1:8080
  trolleyfs webdav --listen 0.0.0.0:8443 pacs.toml       needs tls_cert, tls_key and users in [webdav]

exit codes:
  0  stopped cleanly
  1  a server failed its probe, or serving failed
  2  a mistake in the config or on the command line"""

DEMO = """\
Start a throw-away Orthanc on loopback holding generated studies (no patient
data), mount it with the README's config at MOUNTPOINT, and print the
README's session to try in another terminal.  Ctrl-C, or unmounting, stops
Orthanc and removes everything it made."""

DEMO_EPILOG = """\
examples:
  trolleyfs demo
  trolleyfs demo --mountpoint ~/pacs

exit codes:
  0  stopped cleanly
  1  Orthanc or the mount failed
  2  a bad mount point"""
