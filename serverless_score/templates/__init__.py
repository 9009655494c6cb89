"""Logic App templates (ARM) that run a scoring job from a schedule or an HTTP request, and the
controller role their container runs. README: Logic App templates."""

from .render import Options, read_job, render
from .workflow import REQUEST_SCHEMA, Trigger, definition

__all__ = ["REQUEST_SCHEMA", "Options", "Trigger", "definition", "read_job", "render"]
