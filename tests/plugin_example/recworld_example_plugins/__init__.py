"""Example RecWorld plug-ins: the ``recency`` recommender and the ``first_like`` brain.

Installed, they are found by name through the ``recworld.recommenders`` and
``recworld.brains`` entry points (see this package's pyproject.toml); nothing here is
imported until a scenario names them.
"""

__version__ = "0.1.0"
