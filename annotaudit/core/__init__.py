"""The shared core every part builds on: errors, io, run folders and the item runner, reports.

It imports nothing from the libraries above it (models, annotate, audit, classifiers, lvlm).
"""
