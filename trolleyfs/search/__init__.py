"""Listing protocols.  Each module offers a class implementing model.Searcher."""
