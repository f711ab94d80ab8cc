"""Command-line entry points (thin: parse, call the library, print)."""
