"""A Replicache sync server: Tornado + MongoDB, one data partition per space."""
