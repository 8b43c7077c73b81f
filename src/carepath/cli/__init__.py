"""Command line: argument parsing and output formatting only; behaviour lives in the library."""
