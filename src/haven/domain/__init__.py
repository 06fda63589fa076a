"""The pure domain: frozen dataclasses, enums, ids and errors. No I/O lives here."""
