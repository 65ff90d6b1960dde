"""The audit trail (issue 20): one JSON line per file read and per folder
listed, saying who (uid, user, pid, process) read what (path, study, series
and instance UIDs) from where (memory, disk, shared, pacs).

* :mod:`.record` - the record, and who is behind a request (``/proc``, the user database);
* :mod:`.settings` - the ``[audit]`` table;
* :mod:`.sinks` - a file (O_APPEND, 0600, reopen, copytruncate, size rotation) or syslog;
* :mod:`.writer` - one sink's bounded queue and writer thread;
* :mod:`.trail` - the mount's trail: never blocks a read; ``on_failure`` continue or block.

The front ends (FUSE, WebDAV) call it; nothing here knows either."""
