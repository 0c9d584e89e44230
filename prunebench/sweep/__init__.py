"""``prunebench sweep``: a grid of pipelines, each cell an ordinary run directory, run on Ray.

``grid`` reads and checks a grid file (light: no torch, no Ray), ``runner`` runs the cells on Ray.
Import them by module: this package imports neither, so that checking a grid loads nothing heavy.
"""
