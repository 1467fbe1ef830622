"""b12-cds: a CDS Hooks service that recommends a serum vitamin B12 test behind myalgia."""

__version__ = "0.1.0"
