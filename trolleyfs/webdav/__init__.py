"""The WebDAV front end: the same tree as the FUSE mount, served read-only
over WebDAV (class 1) to desktops that cannot load FUSE (Windows Explorer,
macOS Finder), a second thin front end over the same core.

Layout, from the command down: ``command`` (the CLI's ``webdav``) ->
``serve`` (trio main: core, server threads, signals) -> ``app`` (WsgiDAV +
cheroot) -> ``auth`` (users, Basic) and ``gate`` (methods, Depth, requester)
-> ``resources`` (the tree as DAV resources) -> ``bridge`` (worker threads
into trio).  ``settings`` parses ``[webdav]``; ``requester`` is the audit's
seam; ``core_tmp`` is the core's composition until mount.py has one.
"""
