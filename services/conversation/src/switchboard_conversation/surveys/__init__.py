"""Satisfaction surveys: asked through the customer's channel after a resolution, answered there."""
