"""Readers turn files into `Item`s, or into `Problem`s that name the file, the line and the field.

They read and validate only; writing to the store is the importer's job.
"""
