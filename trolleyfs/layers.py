"""The layers of trolleyfs, declared once: data flows from the top (a
command, a front end) down to the transports, and a module imports only from
its own layer or the layers below it.  ``tests/unit/test_imports.py`` holds
the code to this (and forbids circles between packages and modules); nothing
imports this module at run time.

```
 commands      cli, prefetch, demo                       what a user runs
 serving       mount, davserve, probe                    a front end over a core until stopped; pre-flight
 composition   wiring                                    config -> the core, each part given its collaborators
 config        config                                    TOML -> frozen dataclasses (read by the two above only)
 frontends     fuse, webdav                              thin adapters: requests -> the tree
 tree          tree                                      nodes, names, inodes, views directories
 reading       read, listings, derive                    store and caches, readahead, conversions;
                                                         searches kept; documents made of objects
 services      cluster, limits, audit                    the Redis tier, rate limits, the audit trail
 protocols     protocols, search, retrieve               one module per protocol, the registry
 transport     transport                                 HTTP, DIMSE associations, storage contexts, retries
 foundation    model, errors, part10, ...                leaves: data types, formats, checks
```

Within the core the read path and the listings sit side by side (the tree
uses both); a front end never reaches below the tree but for the services
every request passes (the audit, the limits' priorities) and the counters."""

from __future__ import annotations

# (layer, the top-level modules and packages of trolleyfs in it), top first
LAYERS: tuple[tuple[str, frozenset[str]], ...] = (
    ("commands", frozenset({"__main__", "cli", "clihelp", "prefetch", "prefetchhours", "progress", "demo"})),
    ("serving", frozenset({"mount", "davserve", "probe", "serving"})),
    ("composition", frozenset({"wiring"})),
    ("config", frozenset({"config"})),
    ("frontends", frozenset({"fuse", "webdav"})),
    ("tree", frozenset({"tree"})),
    ("reading", frozenset({"read", "listings", "derive"})),
    ("services", frozenset({"cluster", "limits", "audit"})),
    ("protocols", frozenset({"protocols", "search", "retrieve"})),
    ("transport", frozenset({"transport"})),
    (
        "foundation",
        frozenset(
            {
                "__init__",
                "layers",
                "model",
                "errors",
                "part10",
                "multipart",
                "dicomjson",
                "naming",
                "stats",
                "endpoints",
                "credentials",
                "tomltable",
                "syntaxes",
                "rootnames",
                "deid",
                "folders",
                "idle",
                "logs",
                "sdnotify",
            }
        ),
    ),
)

# The config sits above the core so that only the composition root and the
# commands read it; it may use the settings parsers of lower packages, but
# never the core itself (checked besides the layer order):
NOT_FROM_CONFIG = frozenset({"tree", "read", "listings", "derive"})
