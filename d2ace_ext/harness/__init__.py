"""Experiment harness: run grids of (dataset, model, selector, fold) and plot the results."""
