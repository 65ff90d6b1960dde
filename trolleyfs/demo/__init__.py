"""``trolleyfs demo`` and what it is made of: a throw-away Orthanc on loopback
(:mod:`.orthanc`), generated sample studies (:mod:`.sampledata`) and the runner
that mounts them (:mod:`.runner`).  The tests and the benchmark use the first
two as well; nothing in the filesystem itself depends on this package."""
