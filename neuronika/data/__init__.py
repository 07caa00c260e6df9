"""Datasets, splits and loaders."""
