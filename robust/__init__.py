"""robust: reproducible adversarial-robustness defenses, attacks and paper tables."""

__version__ = "0.1.0"
