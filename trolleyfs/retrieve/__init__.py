"""Read protocols.  Each module offers a class implementing model.Fetcher."""
