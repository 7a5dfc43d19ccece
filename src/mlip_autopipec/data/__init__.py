"""Labelled frames in and training-ready files out: readers, validation, splits and exporters."""
