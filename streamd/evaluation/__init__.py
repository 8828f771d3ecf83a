"""Detection accuracy: COCO-style mean average precision, written by the project."""
