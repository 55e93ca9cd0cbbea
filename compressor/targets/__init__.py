"""Deployment targets: one module per runtime, all with the same interface.

A target is described by a YAML file in the project's ``targets/`` folder and
implemented by a :class:`~compressor.targets.base.Target` subclass named in
:data:`~compressor.targets.registry.RUNTIMES` (imported lazily).
"""
