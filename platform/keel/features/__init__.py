"""Stages 3-4: declared preprocessing and feature engineering, identical in training and serving."""

from .pipeline import FeaturePipeline

__all__ = ["FeaturePipeline"]
