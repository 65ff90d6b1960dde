"""The WebDAV front end: the same tree as the FUSE mount, served read-only
over WebDAV (class 1) to desktops that cannot load FUSE (Windows Explorer,
macOS Finder), a second thin front end over the same core.

Layout, from the server down: ``app`` (WsgiDAV + cheroot) -> ``auth``
(users, Basic) and ``gate`` (methods, Depth, requester) -> ``resources``
(the tree as DAV resources) -> ``bridge`` (worker threads into trio).
``settings`` parses ``[webdav]``; ``requester`` is the audit's seam.  The
server's life (core, threads, signals) is :mod:`trolleyfs.davserve`.
"""
