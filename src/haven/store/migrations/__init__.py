"""Alembic migrations of haven's schema, shipped inside the package.

haven.store.migrate runs them on every Store.open; ``env.py`` is the Alembic
environment and ``versions/`` holds one file per schema revision. This file
only makes the folder a package so that installs carry ``env.py`` along.
"""
