"""Inference backends behind one narrow interface (open, infer, close); see base.py."""
