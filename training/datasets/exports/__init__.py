"""Dataset exports: rows from the database (rows.py), pure row shaping (shapes.py), streaming
writers (writers.py) and the dataset card (card.py)."""
