"""`endcall.outbox`: the public name of the report outbox, `endcall.reports.outbox`."""

from endcall.reports.outbox import *  # noqa: F403 - the same public names
from endcall.reports.outbox import __all__ as __all__
from endcall.reports.outbox import __getattr__ as __getattr__
