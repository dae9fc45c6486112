"""The `edgepoc` command line; each area adds its commands in a module of its own."""
