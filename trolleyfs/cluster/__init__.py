"""The shared cache tier: a Redis (single server or Redis Cluster) that the
mounts of a cluster share, between their local caches and the PACS.

* :mod:`.settings` - the ``[cache.shared]`` table (read with the config);
* :mod:`.crypto` - the optional value encryption and key-name hashing;
* :mod:`.codec` - objects as checksummed chunks, and back;
* :mod:`.link` - the redis-py client in worker threads, with deadlines and a back-off;
* :mod:`.tier` - objects, listings and presence on top of the link;
* :mod:`.leases` - cluster-wide leases (``SET NX PX``, renewed, released);
* :mod:`.once` - "fetch this once in the cluster": look, lease, fetch, publish;
* :mod:`.setup` - building the tier from its settings, and the ``trolleyfs check`` row.
"""
