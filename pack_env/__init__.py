"""Build the packed environment that the HTCondor launcher's ``env_mode=packed`` sends with every job.

Two ways, picked with --mode (auto: pixi-pack when pixi/pixi-pack is on PATH and --python is not given):

* ``pixi-pack``: packs a Pixi environment of this workspace (default ``gpu``, platform linux-64) with
  ``pixi-pack --create-executable`` into a self-extracting ``.sh``; the project's two distributions are
  built as wheels and injected (pixi-pack cannot pack editable path dependencies). Every library comes
  from conda-forge, so the archive runs on any linux-64 worker with glibc >= 2.28 (and, for CUDA, a
  driver for CUDA 12). This is the recommended archive.
* ``standalone``: copies an existing interpreter into a relocatable folder: the base CPython (binary,
  libpython with its run path made relative, standard library) plus the site-packages of the venv it
  belongs to, with the project installed non-editably. A plain venv is not relocatable (its bin/python is a
  link to the base interpreter, its scripts' #! lines and editable installs hold absolute paths); this
  folder is. It still uses the worker's system libraries for glibc, libssl, libffi, zlib, sqlite, ...:
  the worker needs the same CPU architecture, a glibc at least as new as this machine's and the same
  library generation (e.g. Debian 12 -> Debian 12/Ubuntu 22.04+/RHEL 9), and the same Python minor version
  is baked in. Use it where pixi is not available.

Either archive goes to the launcher as ``hydra.launcher.env_mode=packed hydra.launcher.packed_env=PATH``;
the job unpacks it into ./env and runs env/bin/python. See docs/worker-environments.md.
"""
