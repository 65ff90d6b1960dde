"""The directory tree: folders -> studies -> series -> instance files.

Modules, from the bottom up:

* :mod:`.base` - what every node is (names, mtimes, xattrs, listing, lookup);
* :mod:`.context` - the narrow set of collaborators nodes use (:class:`Context`);
* :mod:`.saved` - search results kept in the disk cache (offline listings);
* :mod:`.listings` - searches, asked of the right server and counted (or
  answered from :mod:`.saved`);
* :mod:`.files`, :mod:`.dirs`, :mod:`.querydirs`, :mod:`.control` - the kinds
  of nodes (:mod:`.cachestate`: a series directory's cache-state attribute);
* :mod:`.inodes` - the kernel's view: inode numbers and lookup counts;
* :mod:`.tree` - :class:`~.tree.Tree`, which builds the root and composes the rest.

Nothing here knows about FUSE.  This file imports nothing, so that a leaf
(e.g. :data:`.control.CONTROL_DIR`) can be imported without the whole tree.
"""
