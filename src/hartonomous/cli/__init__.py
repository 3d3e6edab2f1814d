"""The `hartonomous` command line."""
