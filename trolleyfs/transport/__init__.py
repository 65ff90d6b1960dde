"""How trolleyfs talks to servers: HTTP (httpx) and DIMSE (pynetdicom), each
with its errors mapped onto :mod:`trolleyfs.errors`, one retry helper for both,
and the library tuning applied once at start-up."""
