"""Fetchers that serve objects in a form other than as stored, under the
Store: :mod:`.transcode` converts an object to another transfer syntax (in
worker threads, with pydicom's codecs); :mod:`.forms` asks the server for it
where the protocol can, converts otherwise, and hands each request to the
fetcher of its ref's form."""
