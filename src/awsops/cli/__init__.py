"""The awsops command line: a thin layer over the library."""
