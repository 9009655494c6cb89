"""A local Azure Container Instances (ARM) emulator for tests: real HTTP(S), driven by the real
``azure-mgmt-containerinstance`` client, each container run as a local process. See README.md."""

from .emulator import HANG_ARGV, RUNNER_ARGV, AciEmulator, ImageDef, StaticToken

__all__ = ["HANG_ARGV", "RUNNER_ARGV", "AciEmulator", "ImageDef", "StaticToken"]
