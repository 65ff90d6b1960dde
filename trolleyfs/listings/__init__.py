"""Listings: the searches between the tree and the searchers, and where their
results are kept, nearest first.

* :mod:`.sources` - :class:`~.sources.Listings`: a search asked of the right
  server, counted, answered from the disk or the cluster tier where they hold
  it (and while the server is unreachable);
* :mod:`.disk` - results kept on disk beside the disk cache (offline listings);
* :mod:`.cluster` - results shared through the cluster tier (one search for N nodes);
* :mod:`.codec` - the one JSON form of results that both keep;
* :mod:`.identity` - what names a search.

The tree keeps what it listed in memory for its level's TTL
(:class:`~trolleyfs.tree.base.ListedDir`)."""
