"""The read path: where a read gets its bytes, as small parts.

* :mod:`.store` -- :class:`~.store.Store`, the one entry point: cache, then a
  fetch in flight, then a new fetch, with one readahead hook per source; what
  it hands out is always the instance asked for, where the tree placed it.
* :mod:`.memory`, :mod:`.disk` -- the memory and disk caches themselves.
* :mod:`.sizes` -- the record of instance sizes (bounded).
* :mod:`.diskwriter` -- the background writer that fills the disk cache.
* :mod:`.caches` -- the cache layer: memory, disk, sizes and writer as one.
* :mod:`.flights` -- single-flight: one fetch per instance, others wait on it.
* :mod:`.single` -- fetching one instance alone from its server.
* :mod:`.budget` -- the readahead byte budget: pause reading ahead, or give up.
* :mod:`.readahead` -- series readahead after a miss.
* :mod:`.diskahead` -- disk readahead after a disk-cache hit.
* :mod:`.cluster` -- the cluster tier between the local caches and the PACS.
* :mod:`.convert` -- fetchers of other forms (another transfer syntax).

Nothing is imported here, so importing one part does not import the others.
"""
