import os

os.environ.setdefault("COLLAPSE_LIB_PROGRESS", "0")
os.environ.setdefault("MPLBACKEND", "Agg")
