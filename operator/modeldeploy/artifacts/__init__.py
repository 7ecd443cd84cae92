"""The artifact contract, written once: what ``modeldeploy stage`` writes and what the runtime
and the operator read.

- ``manifest``: the manifest as a typed model, its file name and its bounded read;
- ``golden``: the bounded golden-sample reader and the one tolerance comparison;
- ``store``: where artifacts live (a folder or S3), content keys, atomic publishing, owners;
- ``locations``: where a ``file://`` or ``pvc://`` URI is on this machine.

Staging writes through it; the runtime and the operator read through it. Neither of the
readers imports ``modeldeploy.staging`` (a test checks the imports).
"""
