"""The FUSE front end: :mod:`.ops`, the pyfuse3 Operations (thin handlers
over the tree's inode table, one error translation), and :mod:`.pagecache`,
which pushes readahead data into the kernel's page cache.  The serve loop
that mounts them is :mod:`trolleyfs.mount`."""
