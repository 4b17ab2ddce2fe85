"""icephase: on-the-fly ice phase classification for LAMMPS and offline trajectories."""
__version__ = "0.1.0"
