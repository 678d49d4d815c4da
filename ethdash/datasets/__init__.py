"""Datasets: files and formats in (`readers/`, `sources`, `importer`, `fetch`), the items table out
(`catalog`, `items`), item selection (`selection`) and corpus statistics (`corpus_stats`)."""
