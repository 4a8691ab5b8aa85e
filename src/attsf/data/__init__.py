"""From media and feature files to the clip cache, and from the cache to batches."""
