"""Name → class registries (models, losses, datasets) that check names and options before building.

Names and options come from config files, command lines and checkpoints, so
they are untrusted: an unknown name is an :class:`~utils.errors.UnknownNameError`
listing the valid ones, and an option the class does not take is an
:class:`UnknownOptionError` listing the ones it does - both before anything
is built.  Each class checks the range of its own options
(``models/options.py``) and raises :class:`OptionError`.
"""
from __future__ import annotations

import inspect
from collections.abc import Mapping

from torch import nn

from .errors import UnknownNameError, UserError


class OptionError(UserError, ValueError):
    """A constructor option is unknown, of the wrong type or out of range; the message names it."""


class UnknownOptionError(OptionError, TypeError):
    """An option the constructor does not take (a TypeError, as Python's own unexpected keyword)."""


def check_options(cls: type, options: Mapping, name: str | None = None, kind: str = "model") -> None:
    """Refuse option names ``cls`` does not take (listing those it does)."""
    name = name or cls.__name__
    bad_keys = [k for k in options if not isinstance(k, str)]
    if bad_keys:
        raise UnknownOptionError(f"bad options for {kind} {name}: option names must be strings, got {bad_keys!r}")
    own_init = cls.__init__ not in (object.__init__, nn.Module.__init__)  # those take no options
    params = inspect.signature(cls.__init__).parameters if own_init else {}
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    known = [k for k, p in params.items() if k != "self" and p.kind in
             (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)]
    unknown = [k for k in options if k not in known]
    if unknown and not takes_any:
        raise UnknownOptionError(f"bad options for {kind} {name}: it has no option(s) {', '.join(unknown)} "
                                 f"(its options: {', '.join(known) or 'none'})")


class Registry(dict):
    """A dict of ``name -> class`` whose lookups and builds fail with messages naming the valid choices."""

    def __init__(self, kind: str, entries: Mapping[str, type]):
        super().__init__(entries)
        self.kind = kind

    def names(self) -> list[str]:
        return sorted(self)

    def get_class(self, name: str) -> type:
        if not isinstance(name, str) or name not in self:
            raise UnknownNameError(f"unknown {self.kind} {name!r}; known {self.kind}s: {', '.join(self.names())}")
        return self[name]

    def check(self, name: str, options: Mapping) -> type:
        """The class of ``name`` once its option names are known to be accepted."""
        cls = self.get_class(name)
        check_options(cls, options, name, self.kind)
        return cls

    def build(self, name: str, **kwargs):
        """Instantiate ``name`` with ``kwargs``; a range check failing inside names the class."""
        cls = self.check(name, kwargs)
        try:
            return cls(**kwargs)
        except OptionError as err:
            raise OptionError(f"bad options for {self.kind} {name}: {err}") from None
