"""Evaluation: per-set metrics beside bicubic, eval mode, and the pictures and reports it writes."""
