"""Redis writers: the feature store."""
