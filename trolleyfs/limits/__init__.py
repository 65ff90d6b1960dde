"""Protecting the PACS: how fast trolleyfs may take from each server, in
which order waiting work is served, and in which hours background work
may fetch at all (issue 20).

Layout, from the bottom up:

* :mod:`.priority` - user (0), readahead (1), prefetch (2), carried in a context variable;
* :mod:`.gcra` - the rate rule (GCRA), its burst, and the local bucket;
* :mod:`.redis_gcra` - the same rule in Redis for a cluster, with a local fallback;
* :mod:`.queue` - the priority-ordered waiting room in front of a bucket;
* :mod:`.hours` and :mod:`.window` - background hours, and waiting for them;
* :mod:`.settings` - the ``limits`` table of a server;
* :mod:`.server` - one server's limits as the transport calls them, and their stats.

Nothing here knows a URL, an association or FUSE: the transport calls
:meth:`.server.ServerLimits.request` and :meth:`.server.ServerLimits.received`."""
