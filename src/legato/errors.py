"""Errors a user can act on. The CLI prints their message as one line and exits with code 2."""


class LegatoError(Exception):
    """Base class: something the user asked for cannot be done; the message says what to change."""


class InputError(LegatoError):
    """A file, image, latent or option given by the user is missing, unreadable or malformed."""


class CheckpointError(LegatoError):
    """A weights file or adapter bundle is corrupt, of the wrong kind, or does not fit the model."""


class TrainingError(LegatoError):
    """Training cannot go on (for example a loss became NaN)."""
