"""The subcommands of ``attsf``, one module per group: each ``register(sub)`` adds its
commands' arguments beside their handlers, which import the package's modules lazily
(so that ``attsf --help`` and the quick commands start without Lightning)."""
