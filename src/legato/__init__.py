"""legato: remove a person's identity from a frozen image generator with Neural-ODE adapters."""

__version__ = "0.1.0"
