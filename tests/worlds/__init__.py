"""Worlds written apart from detector/generator.py, to measure the tool on data its rules
were not written beside."""
