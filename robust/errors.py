"""One error type for bad configuration, so every stage fails with one readable line."""

from __future__ import annotations

from collections.abc import Iterable


class ConfigError(ValueError):
    """A params value is missing, of the wrong type, or outside its allowed values.

    The message always names the params key, so the user knows which line of
    params.yaml (or which study file) to fix.
    """

    def __init__(self, key: str, problem: str, allowed: Iterable[str] | str | None = None):
        self.key = key
        message = f"params key '{key}': {problem}"
        if allowed is not None:
            if not isinstance(allowed, str):
                allowed = ", ".join(sorted(str(a) for a in allowed))
            message += f" (allowed: {allowed})"
        super().__init__(message)

    def under(self, prefix: str, at: str) -> ConfigError:
        """The same error with the key's leading ``prefix`` replaced by where the value really lives.

        A defense's own checks say ``defense.lambda``; a study row's defense lives at e.g.
        ``runs.<row>.defense.lambda``.
        """
        if self.key != prefix and not self.key.startswith(prefix + "."):
            return self
        moved = ConfigError.__new__(ConfigError)
        moved.key = at + self.key[len(prefix):]
        ValueError.__init__(moved, str(self).replace(f"'{self.key}'", f"'{moved.key}'", 1))
        return moved


class MissingExtra(ImportError):
    """An optional dependency (a pip extra) needed by one feature is not installed.

    The evaluation skips what needs it and says so in one line, e.g.
    ``attack 'boundary' needs foolbox: pip install 'robust[foolbox]'``.
    """

    def __init__(self, feature: str, package: str, extra: str):
        self.feature, self.package, self.extra = feature, package, extra
        super().__init__(f"{feature} needs {package}: pip install 'robust[{extra}]'")
