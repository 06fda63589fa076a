"""The command line: argv in, tables or JSON out."""
