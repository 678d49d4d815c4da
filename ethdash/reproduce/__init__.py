"""`ethdash reproduce`: the study end to end, and its report."""
