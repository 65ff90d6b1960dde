"""The directory tree: folders -> studies -> series -> instance files.

Modules, from the bottom up:

* :mod:`.base` - what every node is (names, mtimes, xattrs, listing, lookup);
* :mod:`.context` - the narrow set of collaborators nodes use (:class:`Context`);
* :mod:`.listings` - searches, asked of the right server and counted;
* :mod:`.files`, :mod:`.dirs`, :mod:`.control` - the kinds of nodes;
* :mod:`.inodes` - the kernel's view: inode numbers and lookup counts;
* :mod:`.tree` - :class:`~.tree.Tree`, which builds the root and composes the rest.

Nothing here knows about FUSE.  This file imports nothing, so that a leaf
(e.g. :data:`.control.CONTROL_DIR`) can be imported without the whole tree.
"""
