"""The directory tree: folders -> studies -> series -> instance files.

Modules, from the bottom up:

* :mod:`.base` - what every node is (names, mtimes, xattrs, listing, lookup);
* :mod:`.context` - the narrow set of collaborators nodes use (:class:`Context`:
  searches from :mod:`trolleyfs.listings`, reads through the Store);
* :mod:`.presenter` - what the tree shows of what it lists (as listed, or
  de-identified);
* :mod:`.files`, :mod:`.dirs`, :mod:`.querydirs`, :mod:`.control` - the kinds
  of nodes (:mod:`.cachestate`: a series directory's cache-state attribute);
* :mod:`.viewdirs`, :mod:`.seriesviews` - the ``views`` directory: documents,
  archives and the analysis views (NIfTI, previews);
* :mod:`.inodes` - the kernel's view: inode numbers and lookup counts;
* :mod:`.tree` - :class:`~.tree.Tree`, which builds the root and composes the rest.

Nothing here knows about FUSE or WebDAV: both front ends walk the same nodes.
"""
