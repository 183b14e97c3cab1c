"""exchanged: secure exchange of minimised thuiszitter lists between Dutch public bodies.

The public API is the ``exchanged`` command; the package layout is described in
``docs/ARCHITECTURE.md``. ``exchanged.core`` is pure (no I/O) and ``exchanged.adapters``
holds one thin module per outside library.
"""

__all__ = ["__version__"]

__version__ = "0.1.0"
