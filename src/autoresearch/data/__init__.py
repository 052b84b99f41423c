"""Data: prepare, hub downloads, local files, the embedded corpus and its entropy floor."""
