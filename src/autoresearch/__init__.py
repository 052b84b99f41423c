"""autoresearch: unattended ML research with a fixed harness and git as the record."""

__version__ = "0.1.0"
